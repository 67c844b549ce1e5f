#pragma once
// The lock a computation holds while it uses a shared device (BasicLockable, so that
// std::unique_lock and std::lock_guard take it). A worker's locks grant the device in the
// order its scheduling policy chooses (runtime/device_arbiter.hpp); a plain mutex will do
// where there is no policy (tests, one request at a time).
#include <mutex>

namespace starmesh {

class compute_lock_i {
 public:
  virtual ~compute_lock_i() = default;
  virtual void lock() = 0;
  virtual void unlock() = 0;
};

// compute_lock_i over a std::mutex: first come, first served as the OS wakes them.
class MutexComputeLock final : public compute_lock_i {
 public:
  void lock() override { mu_.lock(); }
  void unlock() override { mu_.unlock(); }

 private:
  std::mutex mu_;
};

}  // namespace starmesh
