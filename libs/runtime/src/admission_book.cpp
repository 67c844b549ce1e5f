#include "starmesh/runtime/admission_book.hpp"

#include <algorithm>

namespace starmesh {
namespace {

Error not_kept(uint64_t context_id) {
  return make_error(ErrorCode::not_found, "context ", context_id,
                    " is not kept (dropped to make room for other work, or never kept): send the context again");
}

}  // namespace

int AdmissionBook::context_users(uint64_t context_id) const {
  auto k = kept_.find(context_id);
  return k == kept_.end() ? -1 : k->second.users;
}

Admission AdmissionBook::admit(uint64_t id, const PlacementAsk& ask, Time now, Decisions& out) {
  return admit_or_queue(id, ask, 0, now, out);
}

Admission AdmissionBook::attach(uint64_t id, uint64_t context_id, int64_t local_tokens, Time now, Decisions& out,
                                Priority priority) {
  auto k = kept_.find(context_id);
  if (k == kept_.end() || k->second.drop_when_idle)
    return Admission{Admission::Kind::refused, {}, not_kept(context_id)};
  ++k->second.users;  // a user from now on, placed or waiting: nothing drops it meanwhile
  attached_[id] = context_id;
  PlacementAsk ask;
  ask.local_tokens = local_tokens;
  ask.tenant = k->second.tenant;  // only its owner asks it
  ask.priority = priority;
  Admission a = admit_or_queue(id, ask, context_id, now, out);
  if (a.kind == Admission::Kind::refused) detach(id, now, out);
  return a;
}

Admission AdmissionBook::admit_or_queue(uint64_t id, const PlacementAsk& ask, uint64_t context_id, Time now,
                                        Decisions& out) {
  auto refused = [](Error e) { return Admission{Admission::Kind::refused, {}, std::move(e)}; };
  if (queue_.empty()) {
    auto p = try_place(id, ask, context_id, now, out);
    if (p) {
      last_served_ = ask.tenant;
      return Admission{Admission::Kind::placed, std::move(*p), {}};
    }
    if (p.code() != ErrorCode::overloaded) return refused(p.error());  // e.g. a bad plan, no worker
    if (!fits_when_idle(ask, context_id)) return refused(never_fits(id, ask, context_id));
    if (options_.queue_timeout.count() == 0) return refused(p.error());
  } else if (!fits_when_idle(ask, context_id)) {
    return refused(never_fits(id, ask, context_id));
  }
  if (queue_.size() >= options_.max_queued)
    return refused(make_error(ErrorCode::overloaded, "the router is busy: ", queue_.size(),
                              " requests already wait for KV capacity; try again later or add workers"));
  queue_.push_back(Waiting{id, ask, context_id, now});
  out.timers.push_back({TimerKind::queue_deadline, id, options_.queue_timeout});
  return Admission{Admission::Kind::queued, {}, {}};
}

Expected<Placement> AdmissionBook::try_place(uint64_t id, const PlacementAsk& ask, uint64_t context_id, Time now,
                                             Decisions& out) {
  if (context_id == 0) return place_evicting(id, ask, out);
  if (needs_encoding(context_id)) return try_reencode(id, context_id, ask.local_tokens, now, out);
  return try_attach(id, context_id, ask.local_tokens, now, out);
}

// Places a request, dropping idle kept contexts (oldest first) while that is what it takes.
Expected<Placement> AdmissionBook::place_evicting(uint64_t id, const PlacementAsk& ask, Decisions& out) {
  for (;;) {
    auto p = members_.place(id, ask);
    if (p) {
      placements_[id] = *p;
      return p;
    }
    if (p.code() != ErrorCode::overloaded || !members_.fits_when_idle(ask) || !evict_one(out)) return p;
  }
}

// Books a question's query tokens on its kept context's query host, dropping other idle
// contexts while that is what it takes.
Expected<Placement> AdmissionBook::try_attach(uint64_t id, uint64_t context_id, int64_t local_tokens, Time now,
                                              Decisions& out) {
  auto k = kept_.find(context_id);
  if (k == kept_.end()) return not_kept(context_id);
  const PlacedHost& q = k->second.placement.hosts.back();
  for (;;) {
    const Status booked = members_.reserve_exact(id, {{q.worker_id, local_tokens}});
    if (booked) break;
    if (!evict_one(out))
      return make_error(ErrorCode::overloaded, "context ", label(context_id), ": ", booked.message());
  }
  k->second.last_used = now;
  Placement placed = k->second.placement;
  placed.kept_context = k->second.shard_id;
  placed.local_tokens = local_tokens;
  if (auto w = members_.find(q.worker_id))
    placed.hosts.back().reserve = booked_on(w->info, q.end - q.begin) + booked_on(w->info, local_tokens);
  return placed;
}

// Whether it would be placed once no other request held KV (worth waiting for).
bool AdmissionBook::fits_when_idle(const PlacementAsk& ask, uint64_t context_id) const {
  if (context_id == 0) return members_.fits_when_idle(ask);
  auto k = kept_.find(context_id);
  if (k == kept_.end()) return false;
  if (encodes_again(k->second)) return members_.fits_when_idle(reencode_ask(k->second, ask.local_tokens));
  const PlacedHost& q = k->second.placement.hosts.back();
  auto w = members_.find(q.worker_id);
  return w && !w->draining &&
         w->info.kv_free - booked_on(w->info, q.end - q.begin) >= booked_on(w->info, ask.local_tokens);
}

// Why it can never be placed (place() gives the numbers for a request).
Error AdmissionBook::never_fits(uint64_t id, const PlacementAsk& ask, uint64_t context_id) {
  if (context_id == 0) {
    auto p = members_.place(id, ask);  // fails: it does not fit even an idle mesh
    if (p) {                           // unreachable by the callers' checks; keep the book consistent if it happens
      members_.release(id);
      return make_error("request ", id, ": placement changed while refusing it");
    }
    return p.code() == ErrorCode::overloaded ? with_code(p.error(), ErrorCode::refused) : p.error();
  }
  auto k = kept_.find(context_id);
  if (k == kept_.end()) return not_kept(context_id);
  if (encodes_again(k->second))
    return make_error(ErrorCode::unavailable, "context ", label(context_id),
                      " lost its shards with a worker and must be encoded again, but the workers left cannot hold its ",
                      k->second.placement.plan.context_tokens, " tokens beside ", ask.local_tokens,
                      " query and generated tokens: retry when the mesh has grown");
  return make_error(ErrorCode::refused, "context ", label(context_id), ": its query host cannot hold ",
                    ask.local_tokens, " query and generated tokens beside it");
}

// Drops the least recently used kept context no request uses; false if there is none.
bool AdmissionBook::evict_one(Decisions& out) {
  auto victim = kept_.end();
  for (auto it = kept_.begin(); it != kept_.end(); ++it)
    if (it->second.users == 0 && !it->second.stale &&
        (victim == kept_.end() || it->second.last_used < victim->second.last_used))
      victim = it;
  if (victim == kept_.end()) return false;
  drop_context(victim->first, Decisions::Why::evicted, out);
  return true;
}

void AdmissionBook::drop_context(uint64_t context_id, Decisions::Why why, Decisions& out) {
  auto k = kept_.find(context_id);
  if (k == kept_.end()) return;
  members_.release(context_key(context_id));
  Decisions::Dropped d{k->second.shard_id, why, {}};
  for (const PlacedHost& h : k->second.placement.hosts) d.workers.push_back(h.worker);
  if (!d.workers.empty()) out.dropped.push_back(std::move(d));
  names_.erase(k->second.name);
  kept_.erase(k);
}

// A request that asked a kept context ended: the context is idle again once nobody asks it
// (then it goes if a drop waited for that, else its TTL starts).
void AdmissionBook::detach(uint64_t id, Time now, Decisions& out) {
  auto a = attached_.find(id);
  if (a == attached_.end()) return;
  auto k = kept_.find(a->second);
  attached_.erase(a);
  if (k == kept_.end()) return;
  --k->second.users;
  // Its leaving worker's shard is read no more: the questions waiting for it encode it again.
  if (k->second.reencode_when_idle && !k->second.drop_when_idle && readers(k->first) == 0)
    make_stale(k->first, Decisions::Why::worker_left, out);
  if (k->second.users > 0) return;
  k->second.last_used = now;
  if (k->second.drop_when_idle) return drop_context(k->first, Decisions::Why::requested, out);
  if (options_.context_ttl.count() > 0) out.timers.push_back({TimerKind::context_ttl, k->first, options_.context_ttl});
}

// Places queued requests in arrival order while they fit; refuses those that no longer fit
// even an idle mesh (a worker left).
void AdmissionBook::drain_queue(Time now, Decisions& out) {
  // What no idle mesh could hold goes first (workers left), whatever its turn.
  for (auto it = queue_.begin(); it != queue_.end();) {
    if (fits_when_idle(it->ask, it->context_id)) {
      ++it;
      continue;
    }
    const Waiting gone = *it;
    out.answers.push_back({gone.id, never_fits(gone.id, gone.ask, gone.context_id), now - gone.since});
    it = queue_.erase(it);
    detach(gone.id, now, out);
  }
  // Then one at a time, in turn: the one whose turn it is waits for KV; nobody passes it.
  while (!queue_.empty()) {
    auto it = next_in_turn();
    auto p = try_place(it->id, it->ask, it->context_id, now, out);
    if (!p) break;
    out.answers.push_back({it->id, std::move(*p), now - it->since});
    last_served_ = it->ask.tenant;
    queue_.erase(it);
  }
}

std::deque<AdmissionBook::Waiting>::iterator AdmissionBook::next_in_turn() {
  // The smallest tenant name after last_served_, else the smallest of all (wrapping around);
  // then that tenant's request of the highest priority, the oldest of those (the queue is in
  // arrival order, so the first one met).
  const std::string* after = nullptr;
  const std::string* first = nullptr;
  for (const Waiting& w : queue_) {
    const std::string& t = w.ask.tenant;
    if (!first || t < *first) first = &t;
    if (t > last_served_ && (!after || t < *after)) after = &t;
  }
  const std::string& turn = after ? *after : *first;
  auto best = queue_.end();
  for (auto it = queue_.begin(); it != queue_.end(); ++it)
    if (it->ask.tenant == turn && (best == queue_.end() || it->ask.priority > best->ask.priority)) best = it;
  return best;
}

void AdmissionBook::release(uint64_t id, Time now, Decisions& out) {
  std::erase_if(queue_, [id](const Waiting& w) { return w.id == id; });
  members_.release(id);
  placements_.erase(id);
  detach(id, now, out);
  drain_queue(now, out);
}

std::string AdmissionBook::label(uint64_t context_id) const {
  auto k = kept_.find(context_id);
  if (k == kept_.end() || k->second.name.empty()) return std::to_string(context_id);
  return k->second.name.hex();
}

Expected<uint64_t> AdmissionBook::resolve(const ContextId& name, const std::string& tenant) const {
  auto n = names_.find(name);
  if (n != names_.end())
    if (auto k = kept_.find(n->second); k != kept_.end() && k->second.tenant == tenant) return n->second;
  return make_error(ErrorCode::not_found, "no kept context ", name.hex(),
                    " for this client (never kept, dropped to make room or for its TTL, or kept by another token)");
}

bool AdmissionBook::keep(uint64_t id, Time now, Decisions& out, ContextId name, std::string tenant,
                         std::vector<int32_t> tokens) {
  if (auto a = attached_.find(id); a != attached_.end()) return rekeep(id, a->second, now, out);
  auto p = placements_.find(id);
  members_.release(id);
  bool kept = false;
  if (p != placements_.end()) {
    std::vector<std::pair<uint32_t, int64_t>> shards;
    for (const PlacedHost& h : p->second.hosts) shards.emplace_back(h.worker_id, h.end - h.begin);
    if (members_.reserve_exact(context_key(id), shards)) {  // fits: more was just freed
      auto ids = tokens.empty() ? nullptr : std::make_shared<const std::vector<int32_t>>(std::move(tokens));
      kept_[id] = Kept{std::move(p->second), 0, false, now, name, std::move(tenant), std::move(ids), id};
      if (!name.empty()) names_[name] = id;
      kept = true;
      if (options_.context_ttl.count() > 0) out.timers.push_back({TimerKind::context_ttl, id, options_.context_ttl});
    }
    placements_.erase(p);
  }
  drain_queue(now, out);
  return kept;
}

void AdmissionBook::drop(uint64_t context_id, Time now, Decisions& out) {
  auto k = kept_.find(context_id);
  if (k == kept_.end()) return;
  if (k->second.users > 0)
    k->second.drop_when_idle = true;
  else
    drop_context(context_id, Decisions::Why::requested, out);
  drain_queue(now, out);
}

void AdmissionBook::queue_deadline(uint64_t id, Time now, Decisions& out) {
  auto it = std::find_if(queue_.begin(), queue_.end(), [id](const Waiting& w) { return w.id == id; });
  if (it == queue_.end()) return;  // placed meanwhile
  const bool head = it == queue_.begin();
  const Waiting w = *it;
  const auto ahead = std::distance(queue_.begin(), it);
  // At its deadline a request that fits (behind a head that does not) is placed, not refused.
  auto p = try_place(id, w.ask, w.context_id, now, out);
  queue_.erase(it);
  if (p) {
    out.answers.push_back({id, std::move(*p), now - w.since});
  } else {
    out.answers.push_back({id,
                           make_error(ErrorCode::timeout, "no KV capacity freed up for this request within ",
                                      format_seconds(options_.queue_timeout), " in the queue (", ahead,
                                      " requests ahead of it): ", p.error().message),
                           now - w.since});
    detach(id, now, out);  // a question that gave up no longer holds its context
  }
  if (head) drain_queue(now, out);
}

void AdmissionBook::context_ttl(uint64_t context_id, Time now, Decisions& out) {
  auto k = kept_.find(context_id);
  if (k == kept_.end() || k->second.users > 0) return;
  if (now - k->second.last_used < options_.context_ttl) return;  // used since: a later timer checks
  drop_context(context_id, Decisions::Why::ttl, out);
  drain_queue(now, out);
}

void AdmissionBook::capacity_changed(Time now, Decisions& out) { drain_queue(now, out); }

AdmissionBook::Load AdmissionBook::load() const {
  Load l;
  for (const Waiting& w : queue_) {
    int64_t context = w.context_id != 0 ? 0 : w.ask.context_tokens;
    if (auto k = kept_.find(w.context_id); k != kept_.end() && encodes_again(k->second))
      context = k->second.placement.plan.context_tokens;  // it is encoded again
    l.queued_tokens += w.ask.local_tokens + context;      // tokens: its workers (and their pages) are not chosen yet
  }
  for (const auto& [id, k] : kept_)
    for (const PlacedHost& h : k.placement.hosts) {  // as booked: shards only, in their workers' pages
      auto w = members_.find(h.worker_id);
      l.kept_tokens += w ? booked_on(w->info, h.end - h.begin) : h.end - h.begin;
    }
  l.running = int64_t(placements_.size());
  for (const auto& [id, cid] : attached_) l.running += placements_.count(id) ? 0 : 1;
  return l;
}

}  // namespace starmesh
