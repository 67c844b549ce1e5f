#include "starmesh/runtime/decode_batcher.hpp"

#include <algorithm>

namespace starmesh {

// One request's step, on its thread's stack while it waits.
struct DecodeBatcher::Entry {
  QueryHost* host;
  remote_partials_i* remotes;
  std::vector<int32_t> ids;  // one decode token, or a query's prefill
  uint64_t request;
  uint64_t tenant;
  std::optional<SampleSpec> spec;  // the leader draws the token after the batch
  bool lead = false;               // this thread leads the next batch
  bool done = false;               // result is set
  std::function<void()> task;      // a network wait to run on this thread (set by the leader)
  bool task_done = false;
  Expected<std::vector<AttentionState>> gathered = std::vector<AttentionState>{};
  Expected<SampledStep> result = SampledStep{};
};

DecodeBatcher::DecodeBatcher(DeviceArbiter& arbiter, int max_batch, int64_t prefill_tokens,
                             std::chrono::microseconds gather)
    : arbiter_(arbiter),
      max_batch_(size_t(std::clamp(max_batch, 1, kMaxBatch))),
      prefill_tokens_(std::max<int64_t>(0, prefill_tokens)),
      gather_(gather) {}

void DecodeBatcher::leave(uint64_t request) {
  std::lock_guard lock(mu_);
  if (returning_.erase(request)) cv_.notify_all();
}

size_t DecodeBatcher::waiting() {
  std::lock_guard lock(mu_);
  return queue_.size();
}

Expected<Tensor> DecodeBatcher::step(QueryHost& host, remote_partials_i& remotes, std::span<const int32_t> ids,
                                     uint64_t request, uint64_t tenant) {
  SM_ASSIGN(ran, run(host, remotes, ids, request, tenant, std::nullopt));
  return std::move(ran.logits);
}

Expected<SampledStep> DecodeBatcher::step_sampled(QueryHost& host, remote_partials_i& remotes,
                                                  std::span<const int32_t> ids, uint64_t request, uint64_t tenant,
                                                  const SampleSpec& spec) {
  SM_TRY(check_sample_spec(spec));
  return run(host, remotes, ids, request, tenant, spec);
}

Expected<SampledStep> DecodeBatcher::run(QueryHost& host, remote_partials_i& remotes, std::span<const int32_t> ids,
                                         uint64_t request, uint64_t tenant, std::optional<SampleSpec> spec) {
  if (ids.empty()) return make_error("decode batch: request ", request, " asks a step of no tokens");
  if (ids.size() > 1 && int64_t(ids.size()) > prefill_tokens_)
    return make_error("decode batch: request ", request, "'s prefill of ", ids.size(),
                      " tokens is over the batch's prefill budget of ", prefill_tokens_);
  // Checked here, where only this thread steps this host: in the batch, a request out of room
  // would fail every request with it (step_batch refuses the whole batch).
  if (int64_t(ids.size()) > host.room())
    return make_error("decode batch: request ", request, ": ", ids.size(), " more tokens exceed the ", host.room(),
                      " its query host has room for");
  Entry me{&host, &remotes, {ids.begin(), ids.end()}, request, tenant, spec};
  std::unique_lock lock(mu_);
  queue_.push_back(&me);
  if (returning_.erase(request)) cv_.notify_all();  // a leader may be waiting for it
  if (!leading_) {
    leading_ = true;
    me.lead = true;
  }
  for (;;) {
    cv_.wait(lock, [&] { return me.done || me.lead || me.task; });
    if (me.done) return std::move(me.result);
    if (me.task) {  // the leader's batch needs this request's partials: wait on its network here
      auto task = std::move(me.task);
      me.task = nullptr;
      lock.unlock();
      task();
      lock.lock();
      me.task_done = true;
      cv_.notify_all();
      continue;
    }
    me.lead = false;
    lead(lock, me);  // returns with me.done set
  }
}

void DecodeBatcher::lead(std::unique_lock<std::mutex>& lock, Entry& me) {
  // Wait (briefly) for the last batch's requests still on their way back, then for the
  // device (the steps asked meanwhile join too), then take this request first and the oldest
  // waiting, up to max_batch.
  const auto until = std::chrono::steady_clock::now() + gather_;
  cv_.wait_until(lock, until, [&] { return returning_.empty() || queue_.size() >= max_batch_; });
  returning_.clear();  // those not back by now step in a later batch
  lock.unlock();
  arbiter_.acquire(WorkKind::decode, me.request);
  lock.lock();
  Shape shape;
  std::vector<Entry*> batch = take_batch(me, shape);
  std::vector<QueryHost*> hosts;
  std::vector<remote_partials_i*> remotes;
  std::vector<std::vector<int32_t>> ids;
  for (Entry* e : batch) {
    hosts.push_back(e->host);
    remotes.push_back(e->remotes);
    ids.push_back(e->ids);
  }
  if (on_batch_) on_batch_(shape);
  lock.unlock();
  auto ran = QueryHost::step_batch(hosts, remotes, ids,
                                   [&](int layer, std::span<const size_t> which, std::span<const Tensor> qs) {
                                     return gather_all(lock, batch, me, layer, which, qs);
                                   });
  // The step is only queued on the device when step_batch returns. Hand its results out once
  // it has run: the next batch's gather window (above) must open when these requests can
  // come back, not while their sampling still waits for the device. Without this, on a GPU a
  // step queued in 1 ms and run in 10 let the next leader's 2 ms window close first, and the
  // requests split into groups that took turns (H100, 4 at once: mean batch 2.0).
  backend_i& backend = hosts.front()->model().backend();
  if (ran)
    if (Status settled = backend.synchronize(); !settled) ran = settled.error();
  // Every request's token in one draw over the batch's logits (one wait, not one a row).
  std::vector<RowSample> draws;  // row i: batch[i]'s
  if (ran)
    for (size_t i = 0; i < batch.size(); ++i)
      if (ran->outcome[i] && batch[i]->spec) draws.push_back({int64_t(i), *batch[i]->spec});
  Expected<std::vector<int32_t>> tokens = std::vector<int32_t>{};
  if (!draws.empty()) tokens = backend.sample_rows(ran->logits, draws);
  std::vector<Expected<SampledStep>> results;
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!ran) {
      results.emplace_back(ran.error());
    } else if (!ran->outcome[i]) {
      results.emplace_back(ran->outcome[i].error());
    } else if (batch[i]->spec && !tokens) {
      results.emplace_back(tokens.error());
    } else {
      results.emplace_back(SampledStep{ran->logits.rows(int64_t(i), int64_t(i) + 1)});
    }
  }
  if (tokens)
    for (size_t j = 0; j < draws.size(); ++j) results[size_t(draws[j].row)]->token = (*tokens)[j];
  arbiter_.release();
  lock.lock();
  for (size_t i = 0; i < batch.size(); ++i) {
    batch[i]->result = std::move(results[i]);
    batch[i]->done = true;
    returning_.insert(batch[i]->request);
  }
  // The next batch is led by the oldest waiting thread.
  leading_ = !queue_.empty();
  if (leading_) queue_.front()->lead = true;
  cv_.notify_all();
}

std::vector<DecodeBatcher::Entry*> DecodeBatcher::take_batch(Entry& me, Shape& shape) {
  // The leader first, then the oldest waiting, up to max_batch requests. Prefills only within
  // the budget: in a first pass the oldest of each tenant not in the batch yet, in a second
  // the others, oldest first. One that does not fit waits for the next batch, where it is
  // among the oldest (the oldest waiting leads it).
  std::vector<Entry*> batch;
  std::unordered_set<uint64_t> tenants;  // with a prefill in the batch
  auto add = [&](Entry* e) {
    batch.push_back(e);
    if (e->ids.size() == 1) {
      ++shape.decode_steps;
      return;
    }
    ++shape.prefills;
    shape.prefill_tokens += int64_t(e->ids.size());
    tenants.insert(e->tenant);
  };
  add(&me);
  queue_.erase(std::find(queue_.begin(), queue_.end(), &me));
  for (int pass = 0; pass < 2; ++pass)
    for (auto it = queue_.begin(); it != queue_.end() && batch.size() < max_batch_;) {
      Entry* e = *it;
      const int64_t n = int64_t(e->ids.size());
      const bool take =
          n == 1 || (shape.prefill_tokens + n <= prefill_tokens_ && (pass == 1 || !tenants.count(e->tenant)));
      if (!take) {
        ++it;
        continue;
      }
      add(e);
      it = queue_.erase(it);
    }
  shape.prefill_tenants = tenants.size();
  return batch;
}

std::vector<Expected<std::vector<AttentionState>>> DecodeBatcher::gather_all(std::unique_lock<std::mutex>& lock,
                                                                             std::vector<Entry*>& batch, Entry& me,
                                                                             int layer, std::span<const size_t> which,
                                                                             std::span<const Tensor> qs) {
  // Called by step_batch on the leader's thread, the device held: hand each request's wait to
  // its own thread, free the device while they all wait, take it back after.
  std::vector<Entry*> waiting;
  Entry* own = nullptr;
  const Tensor* own_q = nullptr;
  lock.lock();
  for (size_t j = 0; j < which.size(); ++j) {
    Entry* e = batch[which[j]];
    if (e == &me) {
      own = e;
      own_q = &qs[j];
      continue;
    }
    e->task_done = false;
    e->task = [e, layer, q = qs[j]] { e->gathered = e->remotes->gather(layer, q); };
    waiting.push_back(e);
  }
  cv_.notify_all();
  lock.unlock();
  arbiter_.release();
  if (own) own->gathered = own->remotes->gather(layer, *own_q);
  lock.lock();
  cv_.wait(lock, [&] { return std::all_of(waiting.begin(), waiting.end(), [](Entry* e) { return e->task_done; }); });
  lock.unlock();
  arbiter_.acquire(WorkKind::decode, me.request);
  std::vector<Expected<std::vector<AttentionState>>> out;
  for (size_t j : which) out.push_back(std::move(batch[j]->gathered));
  return out;
}

}  // namespace starmesh
