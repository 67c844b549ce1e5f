#include "starmesh/comm/split_transport.hpp"

#include <future>

namespace starmesh {

Expected<std::unique_ptr<SplitTransport>> SplitTransport::create(std::unique_ptr<transport_i> host,
                                                                 std::unique_ptr<transport_i> device) {
  if (!host || !device) return make_error("split transport: needs a host and a device transport");
  if (host->rank() != device->rank() || host->size() != device->size())
    return make_error("split transport: the host transport is rank ", host->rank(), " of ", host->size(),
                      ", the device transport rank ", device->rank(), " of ", device->size());
  if (!device->carries_device_memory())
    return make_error("split transport: '", device->name(), "' does not carry device memory");
  return std::unique_ptr<SplitTransport>(new SplitTransport(std::move(host), std::move(device)));
}

void SplitTransport::cancel_on(const std::atomic<bool>* flag) {
  transport_i::cancel_on(flag);
  host_->cancel_on(flag);
  device_->cancel_on(flag);
}

Status SplitTransport::exchange(std::span<const Transfer> transfers, Deadline deadline) {
  std::vector<Transfer> on_host, on_device;
  for (const Transfer& t : transfers) (t.tensor.device().kind == DeviceKind::cpu ? on_host : on_device).push_back(t);
  if (on_device.empty()) return host_->exchange(on_host, deadline);
  if (on_host.empty()) return device_->exchange(on_device, deadline);
  auto host_part = std::async(std::launch::async, [&] { return host_->exchange(on_host, deadline); });
  const Status device_status = device_->exchange(on_device, deadline);
  const Status host_status = host_part.get();
  return host_status ? device_status : host_status;
}

}  // namespace starmesh
