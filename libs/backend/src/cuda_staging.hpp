#pragma once
// Small host<->device copies through pinned (page-locked) staging buffers, for the copies a
// step makes every layer (ids and positions, a shard host's q, the partials from the wire).
//
// upload: the bytes are copied into a free slot and its copy to the device is queued; the
// call returns without waiting for the stream (a copy from ordinary memory must wait, since
// the caller's buffer may die). A slot is taken again only once an event says its copy ran.
// download: the device copies into a pinned buffer (no staging by the driver), the stream is
// waited on, the bytes are copied out. Both are safe from several threads.
#include <cuda_runtime.h>

#include <cstddef>
#include <mutex>
#include <vector>

#include "starmesh/core/expected.hpp"

namespace starmesh {

class PinnedStaging {
 public:
  static constexpr size_t kSlotBytes = size_t(256) << 10;  // larger copies go the ordinary way
  static constexpr int kSlots = 16;

  PinnedStaging() = default;
  ~PinnedStaging();
  PinnedStaging(const PinnedStaging&) = delete;
  PinnedStaging& operator=(const PinnedStaging&) = delete;

  static bool fits(size_t bytes) { return bytes <= kSlotBytes; }
  // Queues src (host, `bytes` <= kSlotBytes) -> dst (device) on `stream`.
  Status upload(void* dst, const void* src, size_t bytes, cudaStream_t stream);
  // src (device) -> dst (host) after the work queued on `stream`; returns once dst holds it.
  Status download(void* dst, const void* src, size_t bytes, cudaStream_t stream);

 private:
  struct Slot {
    void* host = nullptr;
    cudaEvent_t copied = nullptr;  // recorded after the slot's last copy
  };
  Status ready();  // allocates the slots and the download buffer on first use

  std::mutex mu_;
  std::vector<Slot> slots_;
  size_t next_ = 0;
  void* down_ = nullptr;
};

}  // namespace starmesh
