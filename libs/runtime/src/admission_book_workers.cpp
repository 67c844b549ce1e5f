// AdmissionBook, the part about workers: what a worker's leave or loss does to the kept
// contexts on it (kept_context_policy.hpp), encoding a kept context again after that, and
// what the book says of one worker (its requests, its removal cost's inputs).
#include <algorithm>

#include "starmesh/runtime/admission_book.hpp"

namespace starmesh {

int AdmissionBook::readers(uint64_t context_id) const {
  int n = 0;
  for (const auto& [id, cid] : attached_) {
    if (cid != context_id || placements_.count(id)) continue;  // another context, or encoding it again
    n += std::none_of(queue_.begin(), queue_.end(), [id = id](const Waiting& w) { return w.id == id; });
  }
  return n;
}

bool AdmissionBook::needs_encoding(uint64_t context_id) const {
  auto k = kept_.find(context_id);
  return k != kept_.end() && encodes_again(k->second);
}

PlacementAsk AdmissionBook::reencode_ask(const Kept& k, int64_t local_tokens) {
  PlacementAsk ask;
  ask.context_tokens = k.placement.plan.context_tokens;
  ask.local_tokens = local_tokens;
  ask.block_size = k.placement.plan.block_size;
  ask.anchor_size = k.placement.plan.anchor_size;
  ask.max_hosts = k.placement.plan.hosts;  // no wider than it was
  ask.tenant = k.tenant;
  return ask;
}

// A question over a kept context that lost its shards: a fresh placement of the whole context
// (dropping idle contexts while that is what it takes), which carries the ids to encode.
Expected<Placement> AdmissionBook::try_reencode(uint64_t id, uint64_t context_id, int64_t local_tokens, Time now,
                                                Decisions& out) {
  Kept& k = kept_.at(context_id);
  if (k.reencode_when_idle)  // its questions still run on the leaving worker's shard
    return make_error(ErrorCode::overloaded, "context ", label(context_id),
                      " is encoded again once the questions on its leaving worker end");
  auto p = place_evicting(id, reencode_ask(k, local_tokens), out);
  if (!p) return with_prefix("encoding context " + label(context_id) + " again: ", p.error());
  k.last_used = now;
  p->context_ids = *k.tokens;
  return p;
}

// Its shards and their KV go; the context stays, to be encoded again on its next question.
void AdmissionBook::make_stale(uint64_t context_id, Decisions::Why why, Decisions& out) {
  Kept& k = kept_.at(context_id);
  members_.release(context_key(context_id));
  Decisions::Dropped d{k.shard_id, why, {}, true};
  for (const PlacedHost& h : k.placement.hosts) d.workers.push_back(h.worker);
  out.dropped.push_back(std::move(d));
  k.placement.hosts.clear();
  k.stale = true;
  k.reencode_when_idle = false;
}

// Question `id` encoded its kept context again: its shards become the context's, unless another
// question did so first or the context is being dropped (then they go).
bool AdmissionBook::rekeep(uint64_t id, uint64_t context_id, Time now, Decisions& out) {
  auto p = placements_.find(id);
  members_.release(id);
  bool kept = false;
  if (p != placements_.end()) {
    auto k = kept_.find(context_id);
    // Not on a worker that left meanwhile: the context stays stale.
    const bool staying = std::all_of(p->second.hosts.begin(), p->second.hosts.end(), [&](const PlacedHost& h) {
      auto w = members_.find(h.worker_id);
      return w && !w->draining;
    });
    if (k != kept_.end() && k->second.stale && !k->second.drop_when_idle && staying) {
      std::vector<std::pair<uint32_t, int64_t>> shards;
      for (const PlacedHost& h : p->second.hosts) shards.emplace_back(h.worker_id, h.end - h.begin);
      kept = bool(members_.reserve_exact(context_key(context_id), shards));
      if (kept) {
        k->second.placement = std::move(p->second);
        k->second.placement.context_ids.clear();
        k->second.shard_id = id;
        k->second.stale = false;
      }
    }
    if (!kept) {
      Decisions::Dropped d{id, Decisions::Why::superseded, {}};
      for (const PlacedHost& h : p->second.hosts) d.workers.push_back(h.worker);
      out.dropped.push_back(std::move(d));
    }
    placements_.erase(p);
  }
  detach(id, now, out);
  drain_queue(now, out);
  return kept;
}

WorkerLoad AdmissionBook::load_on(uint32_t worker_id) const {
  WorkerLoad l;
  auto w = members_.find(worker_id);
  if (!w) return l;
  l.draining = w->draining;
  int64_t kept_shards = 0;  // booked on it for kept contexts, not for running requests
  for (const auto& [cid, k] : kept_)
    for (const PlacedHost& h : k.placement.hosts)
      if (h.worker_id == worker_id) {
        l.kept_context_tokens += k.placement.plan.context_tokens;
        kept_shards += booked_on(w->info, h.end - h.begin);
        break;
      }
  l.reserved_tokens = std::max<int64_t>(0, w->reserved - kept_shards);
  l.running_requests = int64_t(requests_on(worker_id).size());
  return l;
}

void AdmissionBook::worker_leaving(uint32_t worker_id, Time now, Decisions& out) {
  worker_gone(worker_id, WorkerEvent::leaving, now, out);
}

// Requests on a lost shard fail on their own (their worker went away) and are planned again.
void AdmissionBook::worker_lost(uint32_t worker_id, Time now, Decisions& out) {
  worker_gone(worker_id, WorkerEvent::lost, now, out);
}

// Its kept contexts: encoded again later, or dropped (kept_context_policy.hpp); then the queue,
// whose requests may no longer fit.
void AdmissionBook::worker_gone(uint32_t worker_id, WorkerEvent event, Time now, Decisions& out) {
  int64_t stale_tokens = 0;
  for (const auto& [cid, k] : kept_)
    if (encodes_again(k)) stale_tokens += k.placement.plan.context_tokens;
  const auto why = event == WorkerEvent::lost ? Decisions::Why::worker_lost : Decisions::Why::worker_left;
  for (uint64_t cid : contexts_on(worker_id)) {
    Kept& k = kept_.at(cid);
    if (encodes_again(k)) continue;  // decided already (its other worker left first)
    KeptContextCase c;
    c.event = event;
    c.has_tokens = k.tokens != nullptr;
    c.drop_asked = k.drop_when_idle;
    c.users = readers(cid);
    c.tokens = k.placement.plan.context_tokens;
    c.stale_tokens = stale_tokens;
    c.max_stale_tokens = options_.max_stale_tokens;
    switch (decide_kept_context(c)) {
      case KeptContextFate::drop:
        drop_context(cid, why, out);
        break;
      case KeptContextFate::drop_when_idle:
        k.drop_when_idle = true;
        break;
      case KeptContextFate::reencode:
        make_stale(cid, why, out);
        stale_tokens += c.tokens;
        break;
      case KeptContextFate::reencode_when_idle:
        k.reencode_when_idle = true;
        stale_tokens += c.tokens;
        break;
    }
  }
  drain_queue(now, out);
}

std::vector<uint64_t> AdmissionBook::contexts_on(uint32_t worker_id) const {
  std::vector<uint64_t> on;
  for (const auto& [cid, k] : kept_)
    for (const PlacedHost& h : k.placement.hosts)
      if (h.worker_id == worker_id) {
        on.push_back(cid);
        break;
      }
  return on;
}

std::vector<uint64_t> AdmissionBook::requests_on(uint32_t worker_id) const {
  std::vector<uint64_t> out;
  auto uses = [worker_id](const Placement& p) {
    return std::any_of(p.hosts.begin(), p.hosts.end(), [&](const PlacedHost& h) { return h.worker_id == worker_id; });
  };
  for (const auto& [id, p] : placements_)
    if (uses(p)) out.push_back(id);
  for (const auto& [id, cid] : attached_) {
    if (placements_.count(id)) continue;  // encoding its context again: counted above
    auto k = kept_.find(cid);
    if (k != kept_.end() && uses(k->second.placement)) out.push_back(id);
  }
  return out;
}

}  // namespace starmesh
