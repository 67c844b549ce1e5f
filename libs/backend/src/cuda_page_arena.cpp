// The GPU page arena: CUDA's virtual memory management. Every page is a physical allocation
// (cuMemCreate) made when the arena is; a range is reserved device address space
// (cuMemAddressReserve), and mapping page i of a range maps one of them there (cuMemMap; then
// one cuMemSetAccess for each run of pages mapped together). The driver's functions come through the runtime's
// entry-point query, so nothing links libcuda (the CI machine has no driver).
#include "cuda_page_arena.hpp"

#include <cuda.h>
#include <cuda_runtime.h>

#include <vector>

#include "page_arena_base.hpp"

namespace starmesh {
namespace {

// The driver calls the arena makes, found once per arena.
struct Driver {
  decltype(&::cuMemGetAllocationGranularity) granularity = nullptr;
  decltype(&::cuMemCreate) create = nullptr;
  decltype(&::cuMemRelease) release = nullptr;
  decltype(&::cuMemAddressReserve) address_reserve = nullptr;
  decltype(&::cuMemAddressFree) address_free = nullptr;
  decltype(&::cuMemMap) map = nullptr;
  decltype(&::cuMemUnmap) unmap = nullptr;
  decltype(&::cuMemSetAccess) set_access = nullptr;
};

template <class Fn>
Status find(const char* symbol, Fn& fn) {
  void* p = nullptr;
  cudaDriverEntryPointQueryResult found{};
  // 12000: these calls' CUDA 12 forms (unchanged since 10.2).
  if (cudaGetDriverEntryPointByVersion(symbol, &p, 12000, cudaEnableDefault, &found) != cudaSuccess ||
      found != cudaDriverEntryPointSuccess || !p)
    return make_error(ErrorCode::refused, "KV pages: the CUDA driver has no ", symbol);
  fn = reinterpret_cast<Fn>(p);
  return {};
}

Expected<Driver> load_driver() {
  Driver d;
  SM_TRY(find("cuMemGetAllocationGranularity", d.granularity));
  SM_TRY(find("cuMemCreate", d.create));
  SM_TRY(find("cuMemRelease", d.release));
  SM_TRY(find("cuMemAddressReserve", d.address_reserve));
  SM_TRY(find("cuMemAddressFree", d.address_free));
  SM_TRY(find("cuMemMap", d.map));
  SM_TRY(find("cuMemUnmap", d.unmap));
  SM_TRY(find("cuMemSetAccess", d.set_access));
  return d;
}

CUmemAllocationProp device_memory(int device) {
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = device;
  return prop;
}

Status cu_status(CUresult r, const char* what) {
  if (r == CUDA_SUCCESS) return {};
  return make_error(r == CUDA_ERROR_OUT_OF_MEMORY ? ErrorCode::refused : ErrorCode::internal, "KV pages: ", what,
                    " failed (CUresult ", int(r), ")");
}

Expected<int64_t> granularity(const Driver& d, int device) {
  const CUmemAllocationProp prop = device_memory(device);
  size_t g = 0;
  SM_TRY(cu_status(d.granularity(&g, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM), "cuMemGetAllocationGranularity"));
  return int64_t(g);
}

class CudaPageArena final : public PageArenaBase {
 public:
  CudaPageArena(Driver d, int device, cudaStream_t stream, int64_t page_bytes, int64_t pages,
                std::chrono::milliseconds wait)
      : PageArenaBase(page_bytes, pages, wait), d_(d), device_(device), stream_(stream) {}
  ~CudaPageArena() override {
    drop_parked();
    for (CUmemGenericAllocationHandle h : handles_) d_.release(h);
  }

  // The physical pages, all made now: the arena is the worker's KV budget, held from the start.
  Status allocate() {
    const CUmemAllocationProp prop = device_memory(device_);
    handles_.reserve(size_t(pages()));
    for (int64_t p = 0; p < pages(); ++p) {
      CUmemGenericAllocationHandle h{};
      SM_TRY(cu_status(d_.create(&h, size_t(page_bytes()), &prop, 0), "cuMemCreate"));
      handles_.push_back(h);
    }
    return {};
  }

  Device device() const override { return Device::cuda(device_); }

  Expected<char*> reserve_address(size_t bytes) override {
    CUdeviceptr base = 0;
    SM_TRY(cu_status(d_.address_reserve(&base, bytes, size_t(page_bytes()), 0, 0), "cuMemAddressReserve"));
    return reinterpret_cast<char*>(base);
  }
  void release_address(char* base, size_t bytes) override { d_.address_free(CUdeviceptr(base), bytes); }

  Status map_page(char* at, int64_t page) override {
    return cu_status(d_.map(CUdeviceptr(at), size_t(page_bytes()), 0, handles_[size_t(page)], 0), "cuMemMap");
  }
  Status allow_access(char* at, int64_t pages) override {
    CUmemAccessDesc access{};
    access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    access.location.id = device_;
    access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    return cu_status(d_.set_access(CUdeviceptr(at), size_t(pages) * size_t(page_bytes()), &access, 1),
                     "cuMemSetAccess");
  }
  void unmap_page(char* at, int64_t) override { d_.unmap(CUdeviceptr(at), size_t(page_bytes())); }
  // Kernels still queued may read the pages: the backend's one stream drains first.
  void before_unmap() override { cudaStreamSynchronize(stream_); }

 private:
  Driver d_;
  int device_;
  cudaStream_t stream_;
  std::vector<CUmemGenericAllocationHandle> handles_;  // index = arena page
};

}  // namespace

Expected<int64_t> cuda_page_granularity(int device) {
  SM_ASSIGN(d, load_driver());
  return granularity(d, device);
}

Expected<std::shared_ptr<page_arena_i>> make_cuda_page_arena(int device, void* stream, int64_t page_bytes,
                                                             int64_t pages, std::chrono::milliseconds wait) {
  SM_ASSIGN(d, load_driver());
  SM_ASSIGN(g, granularity(d, device));
  if (page_bytes <= 0 || page_bytes % g != 0 || page_bytes > (int64_t(1) << 30))
    return make_error("KV pages: a page of ", page_bytes, " bytes (a multiple of ", g, ", at most 1 GiB)");
  if (pages <= 0 || pages > kMaxArenaPages)
    return make_error("KV pages: ", pages, " pages (1 to ", kMaxArenaPages, "; take larger pages)");
  auto arena = std::make_shared<CudaPageArena>(d, device, static_cast<cudaStream_t>(stream), page_bytes, pages, wait);
  SM_TRY(arena->allocate());
  return std::shared_ptr<page_arena_i>(std::move(arena));
}

}  // namespace starmesh
