#pragma once
// A shard host's side of phase 2: a loop on a thread of its own (one per active request on
// the worker), not one actor message per layer. Per step it receives the coordinator's
// header, then per layer Q, answers with shard_partial's (o, lse), until the coordinator
// sends "done", `stop` is set (the request was freed), or something fails.
#include <atomic>
#include <chrono>
#include <functional>

#include "starmesh/attention/phase2.hpp"
#include "starmesh/comm/transport.hpp"
#include "starmesh/core/compute_lock.hpp"

namespace starmesh {

struct ShardServerOptions {
  // The longest wait for Q once a step has begun, and for the answer to be taken.
  std::chrono::milliseconds step_timeout{60000};
  // Between steps the loop polls the network for this long, then sleeps between short
  // polls (an idle request must not hold a core while other requests compute).
  std::chrono::milliseconds spin{5};
  std::chrono::microseconds max_nap{2000};
  // Hears the seconds of each layer's partial, from its query's arrival until the answer is
  // ready to send (over a data plane that carries device memory, where the answer is only
  // queued: until it is sent); null: nobody.
  std::function<void(double)> on_partial;
};

struct ShardServerStats {
  int64_t steps = 0;
  double compute_seconds = 0;  // in `partial` (batched: the wait for the batch too)
};

// How a shard loop gets one layer's partial of q (host f32) over its shard, on the host: alone
// under the worker's compute lock, or batched with other requests' (ShardBatcher).
using ShardPartialFn = std::function<Expected<AttentionState>(int layer, const Tensor& q)>;

// Serves a shard to the coordinator at rank transport.size() - 1, each layer's partial from
// `partial`. Host data planes only (the partials come to the host).
Expected<ShardServerStats> serve_shard(const Transformer& model, transport_i& transport, const ShardPartialFn& partial,
                                       const std::atomic<bool>& stop, const ShardServerOptions& options);
// The same, each partial computed alone under `compute` (the worker's compute lock: one
// backend, many requests), held only while computing. Over a data plane that carries device
// memory (NCCL), Q arrives on the device and the partial is written and sent from there
// (shard_partial_into): no copy through the host.
Expected<ShardServerStats> serve_shard(const Transformer& model, const KvCache& shard, transport_i& transport,
                                       compute_lock_i& compute, const std::atomic<bool>& stop,
                                       const ShardServerOptions& options);

}  // namespace starmesh
