#include "cuda_staging.hpp"

#include <cstring>

namespace starmesh {
namespace {
Status cuda_check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return {};
  return make_error("pinned staging: ", what, ": ", cudaGetErrorString(e));
}
}  // namespace

PinnedStaging::~PinnedStaging() {
  for (Slot& s : slots_) {
    if (s.copied) {
      cudaEventSynchronize(s.copied);
      cudaEventDestroy(s.copied);
    }
    if (s.host) cudaFreeHost(s.host);
  }
  if (down_) cudaFreeHost(down_);
}

Status PinnedStaging::ready() {
  if (!slots_.empty()) return {};
  std::vector<Slot> slots(kSlots);
  Status st;
  for (Slot& s : slots) {
    if (st) st = cuda_check(cudaMallocHost(&s.host, kSlotBytes), "cudaMallocHost");
    if (st) st = cuda_check(cudaEventCreateWithFlags(&s.copied, cudaEventDisableTiming), "cudaEventCreate");
  }
  if (st) st = cuda_check(cudaMallocHost(&down_, kSlotBytes), "cudaMallocHost");
  slots_ = std::move(slots);
  if (!st) {  // what was made goes; the next copy tries again
    for (Slot& s : slots_) {
      if (s.copied) cudaEventDestroy(s.copied);
      if (s.host) cudaFreeHost(s.host);
    }
    slots_.clear();
  }
  return st;
}

Status PinnedStaging::upload(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  if (!fits(bytes)) return make_error("pinned staging: ", bytes, " B is over a slot's ", kSlotBytes);
  std::lock_guard lock(mu_);
  SM_TRY(ready());
  Slot& s = slots_[next_++ % slots_.size()];
  // Its previous copy was queued kSlots uploads ago: long done, unless the stream is that far behind.
  SM_TRY(cuda_check(cudaEventSynchronize(s.copied), "waiting for a slot"));
  std::memcpy(s.host, src, bytes);
  SM_TRY(cuda_check(cudaMemcpyAsync(dst, s.host, bytes, cudaMemcpyHostToDevice, stream), "upload"));
  return cuda_check(cudaEventRecord(s.copied, stream), "cudaEventRecord");
}

Status PinnedStaging::download(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  if (!fits(bytes)) return make_error("pinned staging: ", bytes, " B is over a slot's ", kSlotBytes);
  std::lock_guard lock(mu_);
  SM_TRY(ready());
  SM_TRY(cuda_check(cudaMemcpyAsync(down_, src, bytes, cudaMemcpyDeviceToHost, stream), "download"));
  SM_TRY(cuda_check(cudaStreamSynchronize(stream), "download"));
  std::memcpy(dst, down_, bytes);
  return {};
}

}  // namespace starmesh
