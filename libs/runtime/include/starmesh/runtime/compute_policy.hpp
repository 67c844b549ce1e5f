#pragma once
// Who uses a worker's device next: a plain object (no threads, no actors) that the device
// arbiter asks each time the device frees. tests/runtime/test_compute_policy.cpp covers it.
//
// The rule:
// - Latency work first: a decode batch of this worker's query hosts, or a shard step (the
//   partials another worker's decode step waits for). Oldest first.
// - Phase-1 work (a block of a new context, an anchor, a query's prefill too long for the
//   decode batch) waits behind it, but never for more than `interleave` latency grants in a
//   row: generation goes on while a document is encoded, and a document is encoded while
//   generation goes on.
// - Phase-1 work takes turns between tenants (API tokens, by their router-given tag: the one
//   after the tenant served last), and within a tenant between its requests of the highest
//   priority waiting (likewise, by id), each request's blocks in order: one tenant's burst of
//   documents does not hold back another's, a long document does not hold back a short one,
//   and a tenant's urgent request goes before its own batch work (never before others').
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>

#include "starmesh/service/request.hpp"

namespace starmesh {

enum class WorkKind : uint8_t {
  decode,      // a decode step (batch) of this worker's query hosts
  shard_step,  // a shard's partials for another worker's step
  phase1,      // a phase-1 block or anchor, a query's prefill
};

class ComputePolicy {
 public:
  // interleave >= 1: latency grants in a row while phase-1 work waits.
  explicit ComputePolicy(int interleave = 4);

  // `ticket` (unique among waiters) waits to run `kind` work for request `request` of the
  // tenant tagged `tenant`, at `priority` among that tenant's requests.
  void wait(uint64_t ticket, WorkKind kind, uint64_t request, uint64_t tenant = 0,
            Priority priority = Priority::normal);
  // The waiter that gets the device now, removed from the waiters; none when nobody waits.
  std::optional<uint64_t> next();

  size_t waiting() const { return latency_.size() + phase1_waiting_; }

 private:
  struct Waiter {
    uint64_t ticket;
    uint64_t request;
  };
  std::optional<uint64_t> next_phase1();

  int interleave_;
  std::deque<Waiter> latency_;                                // decode and shard steps, oldest first
  using Requests = std::map<uint64_t, std::deque<uint64_t>>;  // request -> its tickets, oldest first
  struct Tenant {
    std::map<Priority, Requests, std::greater<>> by_priority;  // the highest first
    std::optional<uint64_t> last_request;                      // of this tenant's, served last
  };
  std::map<uint64_t, Tenant> phase1_;  // by tenant tag; a tenant with nothing waiting goes
  size_t phase1_waiting_ = 0;
  std::optional<uint64_t> last_tenant_;  // served last
  int latency_streak_ = 0;               // latency grants since phase 1 last ran
};

}  // namespace starmesh
