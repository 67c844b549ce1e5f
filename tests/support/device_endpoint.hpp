#pragma once
// Test transports over an in-process fabric endpoint (which the fabric owns) that say they
// carry device memory, so that phase 2 takes the NCCL plane's path; each says in exchange()
// how a device tensor crosses the host-only fabric.
#include "starmesh/comm/transport.hpp"

namespace starmesh::test {

class DeviceEndpointBase : public transport_i {
 public:
  explicit DeviceEndpointBase(transport_i& fabric) : fabric_(fabric) {}
  int rank() const override { return fabric_.rank(); }
  int size() const override { return fabric_.size(); }
  bool carries_device_memory() const override { return true; }
  void cancel_on(const std::atomic<bool>* flag) override { fabric_.cancel_on(flag); }

 protected:
  transport_i& fabric_;
};

}  // namespace starmesh::test
