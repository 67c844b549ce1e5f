#pragma once
// What every page arena shares (host_page_arena.cpp, cuda_page_arena.cpp): the free pages,
// lowest first (a growing range tends to get adjacent ones), waited for when short; a range's
// table of which arena page backs each of its pages; and the parked ranges. A device supplies
// address space, the mapping of one page and access to a run of mapped pages.
//
// Parked ranges: a range given back with every page mapped keeps its mapping, parked for the
// next reserve of its size. Every request makes and drops a cache for its own tokens; mapping
// its pages, and unmapping them (which on a GPU first waits for the device), would cost the
// serving path every time. Parked pages count as free: a take short of free pages unmaps
// parked ranges (oldest first) before it waits.
#include <condition_variable>
#include <deque>
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

  // n pages off the free list, unmapping parked ranges and then waiting up to the arena's wait
  // for them; `overloaded` if short.
  Expected<std::vector<int64_t>> take(int64_t n);
  void give(int64_t page);
  // A range's address space and, per page of it, its arena page (-1: not mapped).
  struct Range {
    char* base;
    std::vector<int64_t> phys;
  };
  // A range whose every page is mapped goes back mapped, for the next reserve of as many pages.
  void park(Range r);
  // Unmaps the ranges' mapped pages (after one wait for the device's work on them), gives the
  // pages back and frees the address space.
  void release(std::vector<Range> ranges);

  // The device's part. Address space of `bytes` (no page mapped), and its release.
  virtual Expected<char*> reserve_address(size_t bytes) = 0;
  virtual void release_address(char* base, size_t bytes) = 0;
  // Arena page `page` at `at` (page_bytes long, inside a reserved range), and back out.
  virtual Status map_page(char* at, int64_t page) = 0;
  virtual void unmap_page(char* at, int64_t page) = 0;
  // Access to `pages` pages just mapped at `at`, in one call for the run (a GPU's access flags).
  virtual Status allow_access(char* /*at*/, int64_t /*pages*/) { return {}; }
  // Before a range unmaps its pages: work still reading them must be done (a GPU stream).
  virtual void before_unmap() {}

 protected:
  // Unmaps every parked range. The device's destructor calls it first: unmapping needs the device.
  void drop_parked();

 private:
  // The most ranges parked at once; past it the oldest is unmapped (each holds address space).
  static constexpr size_t kMaxParked = 256;
  // The oldest parked range, off the list (mu_ held).
  Range unpark_oldest();

  int64_t page_bytes_, pages_;
  std::chrono::milliseconds wait_;
  mutable std::mutex mu_;
  std::condition_variable freed_;
  std::set<int64_t> free_;
  std::deque<Range> parked_;  // oldest first
  int64_t parked_pages_ = 0;
};

}  // namespace starmesh
