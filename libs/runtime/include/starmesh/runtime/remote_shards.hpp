#pragma once
// The query coordinator's side of phase 2 on the data plane: remote_partials_i over a
// request's transport. The coordinator is the last rank (the query host); ranks 0 .. size-2
// are the shard hosts, which run serve_shard. Per layer, one exchange sends Q to every shard
// host (after the step's header on layer 0) and receives every (o, lse), all in flight at once.
// Over a data plane that carries device memory (NCCL), Q leaves from the device and the
// partials land there, packed as partial_message_words says; only the header is on the host.
#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "starmesh/attention/phase2.hpp"
#include "starmesh/comm/transport.hpp"
#include "starmesh/core/compute_lock.hpp"

namespace starmesh {

struct WorkerMetrics;

class RemoteShards final : public remote_partials_i {
 public:
  // host_names[r]: "worker 3 at 127.0.0.1:PORT" for rank r (error messages).
  RemoteShards(const Transformer& model, transport_i& transport, std::vector<std::string> host_names,
               std::chrono::milliseconds timeout);

  // The partials of ranks 0 .. size-2, in rank order (so the merge order, hence the rounding,
  // is that of InProcessShards over the same hosts).
  Expected<std::vector<AttentionState>> gather(int layer, const Tensor& q) override;
  // With no shard host (the query host holds the whole context), every other shard is "here":
  // none. A decode step then attends in one call and never waits on the network, so a
  // worker's DecodeBatcher runs a batch of such requests without handing each layer to their
  // threads (that hand-off cost about 5 ms a step of 16 requests at 8K on the H200).
  bool wants_q_on_device() const override { return transport_.carries_device_memory(); }
  const std::vector<const KvShard*>* shards_here() const override {
    return transport_.size() == 1 ? &no_other_shards_ : nullptr;
  }

  // Tells every shard host that the request is over (best effort: a host that is gone is skipped).
  Status finish();

  // While gather waits on the network it releases `lock` (the worker's compute lock), so the
  // worker's shard loops of other requests can compute meanwhile. Null: nothing to release.
  void release_while_waiting(std::unique_lock<compute_lock_i>* lock) { lock_ = lock; }

  int64_t steps() const { return step_; }

  // Times each exchange and counts its bytes there (null: nowhere).
  void count_into(WorkerMetrics* metrics) { metrics_ = metrics; }

 private:
  const Transformer& model_;
  transport_i& transport_;
  std::vector<std::string> names_;
  std::chrono::milliseconds timeout_;
  std::unique_lock<compute_lock_i>* lock_ = nullptr;
  WorkerMetrics* metrics_ = nullptr;
  uint32_t step_ = 0;
  bool finished_ = false;
  const std::vector<const KvShard*> no_other_shards_;
};

}  // namespace starmesh
