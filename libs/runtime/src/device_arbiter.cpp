#include "starmesh/runtime/device_arbiter.hpp"

namespace starmesh {

void DeviceArbiter::acquire(WorkKind kind, uint64_t request, uint64_t tenant, Priority priority) {
  std::unique_lock lock(mu_);
  const uint64_t ticket = next_ticket_++;
  policy_.wait(ticket, kind, request, tenant, priority);
  if (!busy_) grant_next();  // an idle device has no other waiter: this one goes at once
  cv_.wait(lock, [&] { return granted_ == ticket; });
  granted_ = UINT64_MAX;
  ++grants_[size_t(kind)];
}

void DeviceArbiter::release() {
  std::lock_guard lock(mu_);
  busy_ = false;
  grant_next();
}

void DeviceArbiter::grant_next() {
  // The device is reserved for the chosen waiter from now on, before it wakes: a newcomer in
  // between finds it busy and queues.
  if (auto t = policy_.next()) {
    granted_ = *t;
    busy_ = true;
    cv_.notify_all();
  }
}

uint64_t DeviceArbiter::grants(WorkKind kind) const {
  std::lock_guard lock(mu_);
  return grants_[size_t(kind)];
}

}  // namespace starmesh
