#pragma once
// Many requests' shard partials on one worker as one batch (the shard side of DecodeBatcher):
// each request's shard loop asks for its layer's partial of one query row; the asks made while
// a batch waits for the device or runs join the next one, which takes them all (up to
// max_batch) and computes them with shard_partials: one upload, one attention call, one
// download. A query's prefill (several rows) runs alone.
#include <condition_variable>
#include <deque>
#include <mutex>

#include "starmesh/attention/phase2.hpp"
#include "starmesh/runtime/device_arbiter.hpp"

namespace starmesh {

class ShardBatcher {
 public:
  static constexpr int kMaxBatch = 256;
  // max_batch in [1, kMaxBatch].
  ShardBatcher(DeviceArbiter& arbiter, int max_batch);

  // The partial state of q (host f32 [n, hq, d]) over layer `layer` of `shard`, on the host
  // (f32), as shard_partial gives it; `request` names the asker to the device's policy.
  Expected<AttentionState> partial(const Transformer& model, const KvCache& shard, int layer, const Tensor& q,
                                   uint64_t request);

  // Called with each batch's size as it starts (tests, metrics); set before the first ask.
  void on_batch(std::function<void(size_t)> fn) { on_batch_ = std::move(fn); }

 private:
  struct Entry;
  void lead(std::unique_lock<std::mutex>& lock, Entry& me);

  DeviceArbiter& arbiter_;
  const size_t max_batch_;
  std::function<void(size_t)> on_batch_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Entry*> queue_;  // waiting for a batch, oldest first
  bool leading_ = false;
};

}  // namespace starmesh
