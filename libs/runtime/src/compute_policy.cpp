#include "starmesh/runtime/compute_policy.hpp"

#include <algorithm>

namespace starmesh {

ComputePolicy::ComputePolicy(int interleave) : interleave_(std::max(1, interleave)) {}

void ComputePolicy::wait(uint64_t ticket, WorkKind kind, uint64_t request, uint64_t tenant, Priority priority) {
  if (kind == WorkKind::phase1) {
    phase1_[tenant].by_priority[priority][request].push_back(ticket);
    ++phase1_waiting_;
  } else {
    latency_.push_back({ticket, request});
  }
}

std::optional<uint64_t> ComputePolicy::next() {
  const bool phase1_due = phase1_waiting_ > 0 && (latency_.empty() || latency_streak_ >= interleave_);
  if (phase1_due) return next_phase1();
  if (latency_.empty()) return std::nullopt;
  const uint64_t t = latency_.front().ticket;
  latency_.pop_front();
  // The streak only counts while phase 1 waits: an idle phase-1 queue owes nothing.
  latency_streak_ = phase1_waiting_ > 0 ? latency_streak_ + 1 : 0;
  return t;
}

namespace {
// The entry after `last` (wrapping round; the first when none was served): turns in key order.
template <class Map>
typename Map::iterator after(Map& m, const std::optional<uint64_t>& last) {
  auto it = last ? m.upper_bound(*last) : m.begin();
  return it == m.end() ? m.begin() : it;
}
}  // namespace

std::optional<uint64_t> ComputePolicy::next_phase1() {
  // The tenant after the one served last, then among its requests of the highest priority
  // waiting, the one after the request it had served last.
  auto tenant = after(phase1_, last_tenant_);
  Tenant& t = tenant->second;
  auto top = t.by_priority.begin();
  Requests& requests = top->second;
  auto request = after(requests, t.last_request);
  const uint64_t ticket = request->second.front();
  request->second.pop_front();
  last_tenant_ = tenant->first;
  t.last_request = request->first;
  if (request->second.empty()) requests.erase(request);
  if (requests.empty()) t.by_priority.erase(top);
  if (t.by_priority.empty()) phase1_.erase(tenant);
  --phase1_waiting_;
  latency_streak_ = 0;
  return ticket;
}

}  // namespace starmesh
