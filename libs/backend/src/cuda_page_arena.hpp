#pragma once
// The GPU page arena (cuda_page_arena.cpp), for CudaBackend::make_page_arena.
#include "starmesh/backend/page_arena.hpp"

namespace starmesh {

// The page size unit of device `device` (cuMemGetAllocationGranularity; 2 MiB on the H200).
Expected<int64_t> cuda_page_granularity(int device);
// `pages` pages of `page_bytes` (a multiple of the granularity) of device memory, all
// allocated now; work on `stream` (a cudaStream_t) is waited for before a page is unmapped.
Expected<std::shared_ptr<page_arena_i>> make_cuda_page_arena(int device, void* stream, int64_t page_bytes,
                                                             int64_t pages, std::chrono::milliseconds wait);

}  // namespace starmesh
