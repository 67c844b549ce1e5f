#pragma once
// What every page arena shares (host_page_arena.cpp, cuda_page_arena.cpp): the free pages,
// lowest first (a growing range tends to get adjacent ones), waited for when short; and a
// range's table of which arena page backs each of its pages. A device supplies address space
// and the mapping of one page.
#include <condition_variable>
#include <mutex>
#include <set>
#include <vector>

#include "starmesh/backend/page_arena.hpp"

namespace starmesh {

class PageArenaBase : public page_arena_i, public std::enable_shared_from_this<PageArenaBase> {
 public:
  PageArenaBase(int64_t page_bytes, int64_t pages, std::chrono::milliseconds wait);

  int64_t page_bytes() const final { return page_bytes_; }
  int64_t pages() const final { return pages_; }
  int64_t free_pages() const final;
  Expected<std::unique_ptr<page_range_i>> reserve(int64_t pages) final;

  // n pages off the free list, waiting up to the arena's wait for them; `overloaded` if short.
  Expected<std::vector<int64_t>> take(int64_t n);
  void give(int64_t page);

  // The device's part. Address space of `bytes` (no page mapped), and its release.
  virtual Expected<char*> reserve_address(size_t bytes) = 0;
  virtual void release_address(char* base, size_t bytes) = 0;
  // Arena page `page` at `at` (page_bytes long, inside a reserved range), and back out.
  virtual Status map_page(char* at, int64_t page) = 0;
  virtual void unmap_page(char* at, int64_t page) = 0;
  // Before a range unmaps its pages: work still reading them must be done (a GPU stream).
  virtual void before_unmap() {}

 private:
  int64_t page_bytes_, pages_;
  std::chrono::milliseconds wait_;
  mutable std::mutex mu_;
  std::condition_variable freed_;
  std::set<int64_t> free_;
};

}  // namespace starmesh
