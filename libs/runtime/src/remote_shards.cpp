#include "starmesh/runtime/remote_shards.hpp"

#include <cstring>
#include <memory>

#include "starmesh/runtime/data_plane.hpp"
#include "starmesh/runtime/mesh_metrics.hpp"
#include "starmesh/runtime/messages.hpp"

namespace starmesh {

RemoteShards::RemoteShards(const Transformer& model, transport_i& transport, std::vector<std::string> host_names,
                           std::chrono::milliseconds timeout)
    : model_(model), transport_(transport), names_(std::move(host_names)), timeout_(timeout) {}

namespace {
// A host f32 copy of a backend tensor.
Expected<Tensor> host_f32(backend_i& be, const Tensor& t) {
  SM_ASSIGN(h, be.download(t));
  if (h.dtype() == DType::f32) return h;
  const std::vector<float> f = h.to_f32_vector();
  return Tensor::from_f32(f, h.shape());
}
}  // namespace

Expected<std::vector<AttentionState>> RemoteShards::gather(int layer, const Tensor& q) {
  const int root = transport_.rank();
  const int peers = transport_.size() - 1;
  if (root != peers)
    return make_error("phase 2: the coordinator must be the last rank, it is ", root, " of ", peers + 1);
  if (peers == 0) return std::vector<AttentionState>{};
  const int64_t n = q.dim(0), hq = q.dim(1), d = q.dim(2);
  backend_i& be = model_.backend();
  const bool device_wire = transport_.carries_device_memory();
  SM_ASSIGN(qh, device_wire ? q_on_device(be, q) : host_f32(be, q));

  // A step's headers (host memory) go with layer 0's batch; on a plane that carries device
  // memory, in an exchange of their own just before it, so that one exchange never holds both
  // kinds (a split transport would run its halves on two threads, every token). A shard host
  // takes its header before anything else, so the headers can go first.
  std::vector<Transfer> headers, batch;
  Tensor header;
  if (layer == 0) {
    header = encode_header({Phase2Op::step, int32_t(step_), int32_t(n), model_.layers()});
    for (int r = 0; r < peers; ++r)
      (device_wire ? headers : batch).push_back(Transfer::send(r, phase2_tag(step_, 0, Phase2Kind::header), header));
  }
  for (int r = 0; r < peers; ++r) batch.push_back(Transfer::send(r, phase2_tag(step_, layer, Phase2Kind::query), qh));
  // Each answer is one message: on the host, o f32 [n, hq, d] then lse f32 [n, hq]; on the
  // device, as shard_partial_into packs it.
  const DType o_dtype = device_wire ? be.activation_dtype() : DType::f32;
  const int64_t per_host = partial_message_words(o_dtype, n, hq, d);
  Tensor all;
  if (device_wire) {
    SM_ASSIGN(buf, be.scratch(DType::f32, {peers, per_host}));  // every byte is received
    all = buf;
  } else {
    all = Tensor::zeros(DType::f32, {peers, per_host});
  }
  for (int r = 0; r < peers; ++r)
    batch.push_back(Transfer::recv(r, phase2_tag(step_, layer, Phase2Kind::partial), all.rows(r, r + 1)));

  if (lock_) lock_->unlock();
  const auto t0 = std::chrono::steady_clock::now();
  const Deadline deadline = deadline_in(timeout_);
  Status st = headers.empty() ? Status{} : transport_.exchange(headers, deadline);
  if (st) st = transport_.exchange(batch, deadline);
  const double took = seconds_since(t0);  // not the wait for the lock after
  if (lock_) lock_->lock();
  if (!st && st.code() == ErrorCode::cancelled)
    return make_error(ErrorCode::cancelled, "phase 2 (step ", step_, ", layer ", layer,
                      "): the request was freed while waiting for its shard hosts");
  // An injection attempt, not a lost host: the request fails with it, never planned again.
  if (!st && st.code() == ErrorCode::unauthenticated)
    return make_error(ErrorCode::unauthenticated, "phase 2 (step ", step_, ", layer ", layer, "): ", st.message());
  if (!st) {
    std::string hosts;
    for (int r = 0; r < peers; ++r)
      hosts +=
          (hosts.empty() ? "" : ", ") + (size_t(r) < names_.size() ? names_[size_t(r)] : "rank " + std::to_string(r));
    return make_error(st.code() == ErrorCode::timeout ? ErrorCode::timeout : ErrorCode::unavailable, "phase 2 (step ",
                      step_, ", layer ", layer, "): the shard hosts (", hosts, ") did not all answer within ",
                      format_seconds(timeout_), ": ", st.message());
  }
  if (metrics_) {
    metrics_->phase2_exchange_seconds.observe(took);
    metrics_->phase2_sent_bytes.inc(double(((layer == 0 ? header.nbytes() : 0) + qh.nbytes()) * size_t(peers)));
    metrics_->phase2_received_bytes.inc(double(all.nbytes()));
  }
  std::vector<AttentionState> out;
  out.reserve(size_t(peers));
  for (int r = 0; r < peers; ++r) out.push_back(unpack_partial(all.rows(r, r + 1), o_dtype, n, hq, d));
  if (layer + 1 == model_.layers()) ++step_;
  return out;
}

Status RemoteShards::finish() {
  if (finished_) return {};
  finished_ = true;
  const Tensor done = encode_header({Phase2Op::done, int32_t(step_), 0, model_.layers()});
  Status first;
  for (int r = 0; r + 1 < transport_.size(); ++r) {
    const Status st = transport_.send(r, phase2_tag(step_, 0, Phase2Kind::header), done,
                                      deadline_in(std::chrono::milliseconds(1000)));
    if (!st && first) first = st;
  }
  return first;
}

}  // namespace starmesh
