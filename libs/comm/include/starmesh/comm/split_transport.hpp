#pragma once
// One star group over two transports of the same ranks: tensors on a GPU go through
// `device` (NCCL), tensors on the host through `host` (UCX: authenticated, matched by tag,
// cancellable while a peer is silent). The NCCL data plane is built so: the small control
// messages (phase 2's step headers, NCCL's own bootstrap) go where every message is
// authenticated, the bulk (Q and the partial states) stays on the device.
//
// An exchange that holds both kinds runs the host part on a thread of its own beside the
// device part, so that neither waits for the other to finish first.
#include <memory>

#include "starmesh/comm/transport.hpp"

namespace starmesh {

class SplitTransport final : public transport_i {
 public:
  // Both must be ranks of one group: same rank, same size.
  static Expected<std::unique_ptr<SplitTransport>> create(std::unique_ptr<transport_i> host,
                                                          std::unique_ptr<transport_i> device);

  std::string name() const override { return device_->name() + "+" + host_->name(); }
  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  bool carries_device_memory() const override { return true; }
  void cancel_on(const std::atomic<bool>* flag) override;
  Status exchange(std::span<const Transfer> transfers, Deadline deadline) override;

 private:
  SplitTransport(std::unique_ptr<transport_i> host, std::unique_ptr<transport_i> device)
      : host_(std::move(host)), device_(std::move(device)) {}
  std::unique_ptr<transport_i> host_, device_;
};

}  // namespace starmesh
