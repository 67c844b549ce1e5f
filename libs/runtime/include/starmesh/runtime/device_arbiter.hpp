#pragma once
// A worker's device, used by one computation at a time in the order ComputePolicy chooses.
// Each computation runs on its own thread (a job's phase 1, a shard loop, a coordinator's
// decode batch) and holds the device only while it computes: a wait on the network releases
// it, so one request's slow peer never stalls the others.
#include <condition_variable>
#include <cstdint>
#include <mutex>

#include "starmesh/core/compute_lock.hpp"
#include "starmesh/runtime/compute_policy.hpp"

namespace starmesh {

class DeviceArbiter {
 public:
  explicit DeviceArbiter(int interleave = 4) : policy_(interleave) {}

  // Blocks until the policy grants the device to this `kind` of work for `request` (of the
  // tenant tagged `tenant`, at `priority` among its requests).
  void acquire(WorkKind kind, uint64_t request, uint64_t tenant = 0, Priority priority = Priority::normal);
  void release();

  // How many grants each kind got (tests, metrics).
  uint64_t grants(WorkKind kind) const;

 private:
  void grant_next();  // under mu_

  mutable std::mutex mu_;
  std::condition_variable cv_;
  ComputePolicy policy_;
  bool busy_ = false;  // held, or granted to a waiter that has not woken yet
  uint64_t next_ticket_ = 0;
  uint64_t granted_ = UINT64_MAX;  // the ticket that may take the device now
  uint64_t grants_[3] = {0, 0, 0};
};

// The arbiter as a compute lock of one kind of work for one request.
class ArbiterLock final : public compute_lock_i {
 public:
  ArbiterLock(DeviceArbiter& arbiter, WorkKind kind, uint64_t request, uint64_t tenant = 0,
              Priority priority = Priority::normal)
      : arbiter_(arbiter), kind_(kind), request_(request), tenant_(tenant), priority_(priority) {}
  void lock() override { arbiter_.acquire(kind_, request_, tenant_, priority_); }
  void unlock() override { arbiter_.release(); }

 private:
  DeviceArbiter& arbiter_;
  WorkKind kind_;
  uint64_t request_, tenant_;
  Priority priority_;
};

}  // namespace starmesh
