#include "starmesh/runtime/shard_server.hpp"

#include <cstring>
#include <thread>

#include "starmesh/runtime/data_plane.hpp"

namespace starmesh {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kPollSlice = std::chrono::milliseconds(1);
constexpr auto kStopSlice = std::chrono::milliseconds(50);

enum class Wait { ok, stopped, failed };

// Waits for the header of the next step, in slices so that `stop` is seen: busy polls until
// `spin_until`, then naps between short polls. A slice whose receive completes while it is
// being cancelled at its deadline is reported as a timeout although the header did arrive
// (and was authenticated: a message that fails is zeroed): the header buffer is cleared first
// (op 0) and looked at after a timeout.
Wait wait_header(transport_i& t, int peer, uint64_t tag, const Tensor& into, const std::atomic<bool>& stop,
                 Clock::time_point spin_until, std::chrono::microseconds max_nap, Status& error) {
  std::chrono::microseconds nap{50};
  std::memset(into.data(), 0, into.nbytes());
  for (;;) {
    if (stop.load()) return Wait::stopped;
    const auto now = Clock::now();
    const bool spinning = now < spin_until;
    const auto slice_end = now + (spinning ? kStopSlice : kPollSlice);
    const Status st = t.recv(peer, tag, into, slice_end);
    if (st || (st.code() == ErrorCode::timeout && into.data_as<int32_t>()[0] != 0)) return Wait::ok;
    if (stop.load()) return Wait::stopped;  // the transport ends waits once the request is freed
    if (st.code() != ErrorCode::timeout) {  // not the slice's deadline: a real failure
      error = st;
      return Wait::failed;
    }
    if (!spinning) {
      std::this_thread::sleep_for(nap);
      nap = std::min(nap * 2, max_nap);
    }
  }
}

// One step's messages, and how a layer's answer is made into its message.
struct Wire {
  std::function<Status(int64_t rows, Tensor& q, Tensor& answer)> buffers;
  std::function<Status(int layer, const Tensor& q, const Tensor& answer)> answer;
};

Expected<ShardServerStats> serve_loop(const Transformer& model, transport_i& transport, const Wire& wire,
                                      const std::atomic<bool>& stop, const ShardServerOptions& options) {
  const int root = transport.size() - 1;
  if (transport.rank() == root) return make_error("serve_shard: rank ", root, " is the coordinator, not a shard host");
  if (model.layers() > kMaxPhase2Layers)
    return make_error("phase 2 on the wire supports up to ", kMaxPhase2Layers, " layers, the model has ",
                      model.layers());
  ShardServerStats stats;
  Tensor header_buf = Tensor::zeros(DType::i32, {4});
  auto last_activity = Clock::now();
  for (uint32_t step = 0;; ++step) {
    Status err;
    const Wait w = wait_header(transport, root, phase2_tag(step, 0, Phase2Kind::header), header_buf, stop,
                               last_activity + options.spin, options.max_nap, err);
    if (w == Wait::stopped) return stats;
    if (w == Wait::failed)  // its code kept: an unauthenticated message fails the request, not a retry
      return with_prefix("phase 2: waiting for the coordinator's step " + std::to_string(step) + ": ", err.error());
    const Phase2Header h = decode_header(header_buf);
    if (h.op == Phase2Op::done) return stats;
    if (h.op != Phase2Op::step || h.step != int32_t(step) || h.layers != model.layers() || h.rows <= 0 ||
        h.rows > kMaxPhase2Rows)
      return make_error("phase 2: a bad header from the coordinator (op ", int(h.op), ", step ", h.step, " for ", step,
                        ", ", h.rows, " rows (at most ", kMaxPhase2Rows, "), ", h.layers, " layers for ",
                        model.layers(), ")");
    Tensor q, answer;
    SM_TRY(wire.buffers(h.rows, q, answer));
    for (int l = 0; l < model.layers(); ++l) {
      // Within a step Q comes at compute speed: one receive with the step's deadline.
      if (stop.load()) return stats;
      const Status got =
          transport.recv(root, phase2_tag(step, l, Phase2Kind::query), q, deadline_in(options.step_timeout));
      if (!got && stop.load()) return stats;  // freed meanwhile
      if (!got)
        return with_prefix(
            "phase 2: Q of step " + std::to_string(step) + ", layer " + std::to_string(l) + " did not come: ",
            got.error());
      const auto t0 = Clock::now();
      SM_TRY(wire.answer(l, q, answer));
      double took = std::chrono::duration<double>(Clock::now() - t0).count();
      stats.compute_seconds += took;
      const Status sent =
          transport.send(root, phase2_tag(step, l, Phase2Kind::partial), answer, deadline_in(options.step_timeout));
      if (!sent && stop.load()) return stats;  // freed meanwhile
      SM_TRY(sent);
      // On the device the answer was only queued: its time runs to its send.
      if (transport.carries_device_memory()) took = std::chrono::duration<double>(Clock::now() - t0).count();
      if (options.on_partial) options.on_partial(took);
    }
    ++stats.steps;
    last_activity = Clock::now();
  }
}

// Each layer's partial from `partial` (a host f32 state), copied into a host message.
Wire host_wire(const Transformer& model, const ShardPartialFn& partial) {
  const int64_t hq = model.config().num_attention_heads, d = model.config().head_dim;
  Wire w;
  w.buffers = [hq, d](int64_t n, Tensor& q, Tensor& answer) -> Status {
    q = Tensor::zeros(DType::f32, {n, hq, d});
    answer = Tensor::zeros(DType::f32, {partial_message_words(DType::f32, n, hq, d)});
    return {};
  };
  w.answer = [&partial](int layer, const Tensor& q, const Tensor& answer) -> Status {
    SM_ASSIGN(part, partial(layer, q));
    const int64_t n = q.dim(0), o_elems = part.o.numel();
    if (part.o.dtype() != DType::f32 || part.lse.dtype() != DType::f32 || o_elems != q.numel() ||
        part.lse.numel() != n * q.dim(1))
      return make_error("phase 2: the shard partial is not f32 o ", to_string(q.shape()), " and lse [", n, ", ",
                        q.dim(1), "]");
    std::memcpy(answer.data(), part.o.data(), size_t(o_elems) * sizeof(float));
    std::memcpy(answer.data_as<float>() + o_elems, part.lse.data(), size_t(part.lse.numel()) * sizeof(float));
    return {};
  };
  return w;
}

// Q and the answer on the model's device, for a data plane that carries device memory: the
// answer is computed into its message there, under `compute`, and sent from there.
Wire device_wire(const Transformer& model, const KvCache& shard, compute_lock_i& compute) {
  const int64_t hq = model.config().num_attention_heads, d = model.config().head_dim;
  Wire w;
  w.buffers = [&model, &compute, hq, d](int64_t n, Tensor& q, Tensor& answer) -> Status {
    backend_i& be = model.backend();
    std::lock_guard lock(compute);
    SM_ASSIGN(q_buf, be.alloc(be.activation_dtype(), {n, hq, d}));
    SM_ASSIGN(a_buf, be.alloc(DType::f32, {partial_message_words(be.activation_dtype(), n, hq, d)}));
    q = q_buf;
    answer = a_buf;
    return {};
  };
  w.answer = [&model, &shard, &compute](int layer, const Tensor& q, const Tensor& answer) -> Status {
    std::lock_guard lock(compute);
    return shard_partial_into(model, shard, layer, q, answer);
  };
  return w;
}

}  // namespace

Expected<ShardServerStats> serve_shard(const Transformer& model, const KvCache& shard, transport_i& transport,
                                       compute_lock_i& compute, const std::atomic<bool>& stop,
                                       const ShardServerOptions& options) {
  if (transport.carries_device_memory())
    return serve_loop(model, transport, device_wire(model, shard, compute), stop, options);
  const ShardPartialFn alone = [&](int layer, const Tensor& q) {
    std::lock_guard lock(compute);
    return shard_partial(model, shard, layer, q);
  };
  return serve_loop(model, transport, host_wire(model, alone), stop, options);
}

Expected<ShardServerStats> serve_shard(const Transformer& model, transport_i& transport, const ShardPartialFn& partial,
                                       const std::atomic<bool>& stop, const ShardServerOptions& options) {
  if (transport.carries_device_memory())
    return make_error("serve_shard: '", transport.name(),
                      "' carries device memory; a host partial function serves host data planes only");
  return serve_loop(model, transport, host_wire(model, partial), stop, options);
}

}  // namespace starmesh
