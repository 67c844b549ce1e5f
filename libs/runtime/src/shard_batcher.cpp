#include "starmesh/runtime/shard_batcher.hpp"

#include <algorithm>

namespace starmesh {

struct ShardBatcher::Entry {
  const Transformer* model;
  ShardAsk ask;
  uint64_t request;
  bool lead = false;
  bool done = false;
  Expected<AttentionState> result = AttentionState{};
};

ShardBatcher::ShardBatcher(DeviceArbiter& arbiter, int max_batch)
    : arbiter_(arbiter), max_batch_(size_t(std::clamp(max_batch, 1, kMaxBatch))) {}

Expected<AttentionState> ShardBatcher::partial(const Transformer& model, const KvCache& shard, int layer,
                                               const Tensor& q, uint64_t request) {
  Entry me{&model, {&shard, layer, q}, request};
  std::unique_lock lock(mu_);
  queue_.push_back(&me);
  if (!leading_) {
    leading_ = true;
    me.lead = true;
  }
  for (;;) {
    cv_.wait(lock, [&] { return me.done || me.lead; });
    if (me.done) return std::move(me.result);
    me.lead = false;
    lead(lock, me);  // returns with me.done set
  }
}

void ShardBatcher::lead(std::unique_lock<std::mutex>& lock, Entry& me) {
  // The device first: the asks made meanwhile join this batch. One-row asks of the same model
  // batch together; an ask of several rows (a query's prefill) runs alone.
  lock.unlock();
  arbiter_.acquire(WorkKind::shard_step, me.request);
  lock.lock();
  const auto batchable = [&](const Entry* e) { return e->model == me.model && e->ask.q.dim(0) == 1; };
  std::vector<Entry*> batch{&me};
  queue_.erase(std::find(queue_.begin(), queue_.end(), &me));
  if (batchable(&me))
    for (auto it = queue_.begin(); it != queue_.end() && batch.size() < max_batch_;) {
      if (batchable(*it)) {
        batch.push_back(*it);
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
  if (on_batch_) on_batch_(batch.size());
  lock.unlock();
  // Alone, as shard_partial computes it: a batch of one, and each ask of a batch that failed
  // (so that one bad ask fails alone).
  const auto alone = [](const Entry& e) { return shard_partial(*e.model, *e.ask.shard, e.ask.layer, e.ask.q); };
  std::vector<Expected<AttentionState>> results;
  Expected<std::vector<AttentionState>> ran = Error{"not batched"};
  if (batch.size() > 1) {
    std::vector<ShardAsk> asks;
    for (const Entry* e : batch) asks.push_back(e->ask);
    ran = shard_partials(*me.model, asks);
  }
  for (size_t i = 0; i < batch.size(); ++i)
    results.push_back(ran ? Expected<AttentionState>((*ran)[i]) : alone(*batch[i]));
  arbiter_.release();
  lock.lock();
  for (size_t i = 0; i < batch.size(); ++i) {
    batch[i]->result = std::move(results[i]);
    batch[i]->done = true;
  }
  leading_ = !queue_.empty();
  if (leading_) queue_.front()->lead = true;
  cv_.notify_all();
}

}  // namespace starmesh
