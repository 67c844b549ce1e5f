#include "starmesh/runtime/membership.hpp"

#include <algorithm>

#include "starmesh/attention/block_plan.hpp"

namespace starmesh {

std::string worker_name(uint32_t id, const std::string& endpoint) {
  return "worker " + std::to_string(id) + " at " + endpoint;
}

Expected<uint32_t> Membership::add(WorkerActor handle, WorkerInfo info) {
  if (info.kv_capacity <= 0)
    return make_error(ErrorCode::invalid_argument, "worker at ", info.endpoint,
                      " offers no KV capacity: start it with --capacity > 0");
  if (info.kv_page_tokens < 0 || info.kv_page_tokens > kMaxPageTokens)
    return make_error(ErrorCode::invalid_argument, "worker at ", info.endpoint, " books KV in pages of ",
                      info.kv_page_tokens, " tokens (0 to ", kMaxPageTokens, ")");
  if (!model_.empty() && info.model != model_)
    return make_error(ErrorCode::invalid_argument, "worker at ", info.endpoint, " serves model '", info.model,
                      "' but this mesh serves '", model_, "': start it with the router's --model");
  if (!data_plane_.empty() && info.data_plane != data_plane_)
    return make_error(ErrorCode::invalid_argument, "worker at ", info.endpoint, " speaks data plane '", info.data_plane,
                      "' but the mesh uses '", data_plane_, "': start every worker with the same --transport");
  if (model_.empty()) model_ = info.model;
  if (data_plane_.empty()) data_plane_ = info.data_plane;
  const uint32_t id = next_id_++;
  Entry e;
  e.view.id = id;
  e.view.info = std::move(info);
  e.handle = std::move(handle);
  workers_.emplace(id, std::move(e));
  return id;
}

std::optional<WorkerView> Membership::remove(const caf::actor_addr& who) {
  for (const auto& [id, e] : workers_)
    if (e.handle.address() == who) return remove(id);
  return std::nullopt;
}

std::optional<WorkerView> Membership::remove(uint32_t id) {
  auto it = workers_.find(id);
  if (it == workers_.end()) return std::nullopt;
  WorkerView v = it->second.view;
  workers_.erase(it);
  if (workers_.empty()) data_plane_.clear();
  return v;
}

// The placement of `ask` if every worker had `free_of(entry)` tokens free; nothing booked.
template <class FreeOf>
Expected<std::optional<Placement>> plan_on(const std::map<uint32_t, Membership::Entry>& workers,
                                           const PlacementAsk& ask, const FreeOf& free_of) {
  std::vector<const Membership::Entry*> candidates;
  for (const auto& [id, e] : workers)
    if (free_of(e) > 0 && !e.view.draining) candidates.push_back(&e);
  // Most free first; ties by id, so placement is deterministic.
  std::stable_sort(candidates.begin(), candidates.end(),
                   [&](const Membership::Entry* a, const Membership::Entry* b) { return free_of(*a) > free_of(*b); });
  int max_hosts = int(candidates.size());
  if (ask.max_hosts > 0) max_hosts = std::min(max_hosts, int(ask.max_hosts));
  for (int hosts = max_hosts; hosts >= 1; --hosts) {
    SM_ASSIGN(plan, plan_blocks(ask.context_tokens, ask.block_size, ask.anchor_size, hosts));
    const size_t used = plan.hosts.size();
    // The query host (the last plan host) on the worker with the most free KV; the other
    // hosts on the next ones, in worker id order.
    std::vector<const Membership::Entry*> chosen(candidates.begin() + 1, candidates.begin() + long(used));
    std::sort(chosen.begin(), chosen.end(),
              [](const Membership::Entry* a, const Membership::Entry* b) { return a->view.id < b->view.id; });
    chosen.push_back(candidates.front());
    bool fits = true;
    Placement p;
    p.local_tokens = ask.local_tokens;
    p.plan = {plan.context_tokens, plan.block_size, plan.anchor_size, int32_t(used)};
    for (size_t h = 0; h < used; ++h) {
      const HostRange& r = plan.hosts[h];
      PlacedHost ph;
      ph.worker_id = chosen[h]->view.id;
      ph.worker = chosen[h]->handle;
      ph.endpoint = chosen[h]->view.info.endpoint;
      ph.address = chosen[h]->view.info.address;
      ph.begin = r.begin;
      ph.end = r.end;
      const WorkerInfo& w = chosen[h]->view.info;  // a shard, and the query host's local tokens
      ph.reserve = booked_on(w, r.end - r.begin) + (h + 1 == used ? booked_on(w, ask.local_tokens) : 0);
      fits = fits && ph.reserve <= free_of(*chosen[h]);
      p.hosts.push_back(std::move(ph));
    }
    if (fits) return std::optional<Placement>(std::move(p));
  }
  return std::optional<Placement>();
}

std::optional<WorkerView> Membership::drain(const caf::actor_addr& who) {
  for (const auto& [id, e] : workers_)
    if (e.handle.address() == who) return drain(id);
  return std::nullopt;
}

std::optional<WorkerView> Membership::drain(uint32_t id) {
  auto it = workers_.find(id);
  if (it == workers_.end()) return std::nullopt;
  it->second.view.draining = true;
  return it->second.view;
}

Expected<Placement> Membership::place(uint64_t request_id, const PlacementAsk& ask) {
  if (workers_.empty())
    return make_error(ErrorCode::unavailable,
                      "no worker has registered with the router yet: start `starmesh worker --router HOST:PORT`");
  if (reservations_.count(request_id)) return make_error("request ", request_id, " is already placed");
  SM_ASSIGN(planned, plan_on(workers_, ask, [](const Entry& e) { return e.free(); }));
  if (planned) {
    std::vector<std::pair<uint32_t, int64_t>> tokens;
    for (const PlacedHost& ph : planned->hosts) tokens.emplace_back(ph.worker_id, ph.reserve);
    book(request_id, tokens);
    return std::move(*planned);
  }
  int64_t total_free = 0;
  std::string per_worker;
  for (const auto& [id, e] : workers_) {
    total_free += std::max<int64_t>(0, e.free());
    per_worker += (per_worker.empty() ? "" : ", ") + name(id) + ": " + std::to_string(std::max<int64_t>(0, e.free()));
  }
  return make_error(ErrorCode::overloaded, "not enough free KV capacity: the request needs ", ask.context_tokens,
                    " context tokens spread over ", "the workers plus ", ask.local_tokens,
                    " query and generated tokens on one of them, but the ", workers_.size(), " workers have ",
                    total_free, " free tokens (", per_worker,
                    "); add workers, start them with a larger --capacity, or shorten the context");
}

bool Membership::fits_when_idle(const PlacementAsk& ask) const {
  auto planned = plan_on(workers_, ask, [](const Entry& e) { return e.view.info.kv_free; });
  return planned && planned->has_value();
}

Status Membership::reserve_exact(uint64_t key, const std::vector<std::pair<uint32_t, int64_t>>& tokens) {
  if (reservations_.count(key)) return make_error("KV is already booked under ", key);
  std::vector<std::pair<uint32_t, int64_t>> booked;
  for (const auto& [id, tokens_there] : tokens) {
    auto w = workers_.find(id);
    if (w == workers_.end()) return make_error(ErrorCode::unavailable, name(id), " is no longer in the mesh");
    const int64_t n = booked_on(w->second.view.info, tokens_there);
    if (w->second.free() < n)
      return make_error(ErrorCode::overloaded, name(id), " has ", std::max<int64_t>(0, w->second.free()),
                        " free KV tokens, ", n, " are needed");
    booked.emplace_back(id, n);
  }
  book(key, booked);
  return {};
}

void Membership::book(uint64_t key, const std::vector<std::pair<uint32_t, int64_t>>& tokens) {
  auto& booked = reservations_[key];
  for (const auto& [id, n] : tokens) {
    Entry& e = workers_.at(id);
    e.view.reserved += n;
    e.view.requests += 1;
    booked.emplace_back(id, n);
  }
}

void Membership::release(uint64_t request_id) {
  auto it = reservations_.find(request_id);
  if (it == reservations_.end()) return;
  for (const auto& [id, tokens] : it->second) {
    auto w = workers_.find(id);
    if (w == workers_.end()) continue;  // went away meanwhile
    w->second.view.reserved -= tokens;
    w->second.view.requests -= 1;
  }
  reservations_.erase(it);
}

std::vector<WorkerView> Membership::view() const {
  std::vector<WorkerView> out;
  for (const auto& [id, e] : workers_) out.push_back(e.view);
  return out;
}

std::vector<std::pair<uint32_t, WorkerActor>> Membership::handles() const {
  std::vector<std::pair<uint32_t, WorkerActor>> out;
  for (const auto& [id, e] : workers_) out.emplace_back(id, e.handle);
  return out;
}

std::optional<WorkerView> Membership::find(uint32_t id) const {
  auto it = workers_.find(id);
  if (it == workers_.end()) return std::nullopt;
  return it->second.view;
}

std::string Membership::name(uint32_t id) const {
  auto it = workers_.find(id);
  return worker_name(id, it == workers_.end() ? std::string("(gone)") : it->second.view.info.endpoint);
}

}  // namespace starmesh
