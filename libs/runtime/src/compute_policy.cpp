#include "starmesh/runtime/compute_policy.hpp"

#include <algorithm>

namespace starmesh {

ComputePolicy::ComputePolicy(int interleave) : interleave_(std::max(1, interleave)) {}

void ComputePolicy::wait(uint64_t ticket, WorkKind kind, uint64_t request) {
  if (kind == WorkKind::phase1) {
    phase1_[request].push_back(ticket);
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

std::optional<uint64_t> ComputePolicy::next_phase1() {
  // The request after the one served last (wrapping round), so each gets a block in turn.
  auto it = last_phase1_request_ ? phase1_.upper_bound(*last_phase1_request_) : phase1_.begin();
  if (it == phase1_.end()) it = phase1_.begin();
  const uint64_t t = it->second.front();
  it->second.pop_front();
  last_phase1_request_ = it->first;
  if (it->second.empty()) phase1_.erase(it);
  --phase1_waiting_;
  latency_streak_ = 0;
  return t;
}

}  // namespace starmesh
