#pragma once
// KV memory in pages of one size, shared by every KV cache of a worker (paged KV).
//
// A cache reserves address space for its whole capacity and maps pages into it (a KV cache
// maps all of its pages when it is made): its rows stay contiguous for every kernel (no page
// tables in the attention ops), while memory is taken a page at a time and any free page
// serves any cache, so caches
// of every length share the device without fragmentation, and a freed cache's pages are at
// once another's. This is the vAttention scheme (virtual contiguity, physical paging). The
// host arena (host_page_arena.cpp) maps pages of a memfd into reserved address space.
#include <chrono>
#include <cstdint>
#include <memory>

#include "starmesh/core/expected.hpp"
#include "starmesh/core/tensor.hpp"

namespace starmesh {

// The most pages an arena holds. On the host each mapped page is a mapping of the process at
// worst (Linux allows 65530 by default); on the GPU each is a physical allocation. Larger KV
// budgets take larger pages (kv_page_geometry).
constexpr int64_t kMaxArenaPages = 32768;

// Address space for `pages()` pages of an arena, mapped page by page. The destructor gives the
// pages back to the arena: unmapped, or, when every page is mapped, still mapped and parked for
// the next range of as many pages (page_arena_base.hpp says why). Parked pages count as free.
class page_range_i {
 public:
  virtual ~page_range_i() = default;
  virtual void* base() const = 0;
  virtual int64_t pages() const = 0;   // reserved
  virtual int64_t mapped() const = 0;  // of them mapped now
  virtual bool is_mapped(int64_t page) const = 0;
  // Maps pages [first, first + n) (pages mapped already stay as they are). When the arena has
  // too few free pages it waits for them up to the arena's wait (pages a freed cache still
  // holds come back when its last view goes), then fails with `overloaded` having mapped none.
  virtual Status map(int64_t first, int64_t n) = 0;
};

class page_arena_i {
 public:
  virtual ~page_arena_i() = default;
  virtual Device device() const = 0;
  virtual int64_t page_bytes() const = 0;
  virtual int64_t pages() const = 0;
  virtual int64_t free_pages() const = 0;
  // Address space for `pages` pages: none mapped, or a parked range of that size, all mapped
  // (its memory holds what its last user wrote). The range may outlive the arena's owner (it
  // holds the arena).
  virtual Expected<std::unique_ptr<page_range_i>> reserve(int64_t pages) = 0;
};

// An arena of `pages` pages of `page_bytes` bytes (a multiple of the host page size) in host
// memory. A map that finds too few free pages waits up to `wait` for them.
Expected<std::shared_ptr<page_arena_i>> make_host_page_arena(int64_t page_bytes, int64_t pages,
                                                             std::chrono::milliseconds wait);
// The host's page size: page_bytes of a host arena is a multiple of it.
int64_t host_page_granularity();

}  // namespace starmesh
