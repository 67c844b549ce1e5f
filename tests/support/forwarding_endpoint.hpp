#pragma once
// A test transport over an in-process fabric endpoint (which the fabric owns): it forwards
// every call, and says it carries device memory when told to, so that phase 2 takes the NCCL
// plane's path. Subclasses say in exchange() how a device tensor crosses the host-only fabric.
#include "starmesh/comm/transport.hpp"

namespace starmesh::test {

class ForwardingEndpoint : public transport_i {
 public:
  explicit ForwardingEndpoint(transport_i& fabric, bool device_memory = false)
      : fabric_(fabric), device_memory_(device_memory) {}
  std::string name() const override { return "forward"; }
  int rank() const override { return fabric_.rank(); }
  int size() const override { return fabric_.size(); }
  bool carries_device_memory() const override { return device_memory_; }
  void cancel_on(const std::atomic<bool>* flag) override { fabric_.cancel_on(flag); }
  Status exchange(std::span<const Transfer> transfers, Deadline deadline) override {
    return fabric_.exchange(transfers, deadline);
  }

 protected:
  transport_i& fabric_;

 private:
  bool device_memory_;
};

}  // namespace starmesh::test
