#pragma once
// A worker's KV budget in tokens: every request it holds reserves its shard (and, on the
// query host, the query and generated tokens) before phase 1 allocates anything, so a
// worker that is full refuses up front instead of failing halfway. Each cache is booked in
// whole pages (kv_paging.hpp), the unit its memory comes in.
#include <cstdint>
#include <map>

#include "starmesh/core/expected.hpp"
#include "starmesh/model/kv_paging.hpp"

namespace starmesh {

class KvPool {
 public:
  // page_tokens 0: tokens are not rounded.
  explicit KvPool(int64_t capacity, int64_t page_tokens = 0) : capacity_(capacity), page_tokens_(page_tokens) {}

  // The tokens a cache of `tokens` takes: whole pages.
  int64_t booked(int64_t tokens) const { return round_to_pages(tokens, page_tokens_); }

  // Reserves `tokens` for `request`; refuses (with the numbers) when fewer are free or the
  // request already holds a reservation here.
  Status reserve(uint64_t request, int64_t tokens);
  // Frees the reservation of `request`; returns how many tokens it held (0: none).
  int64_t release(uint64_t request);

  int64_t capacity() const { return capacity_; }
  int64_t used() const { return used_; }
  int64_t free() const { return capacity_ - used_; }
  bool holds(uint64_t request) const { return held_.count(request) > 0; }
  size_t requests() const { return held_.size(); }

 private:
  int64_t capacity_;
  int64_t page_tokens_;
  int64_t used_ = 0;
  std::map<uint64_t, int64_t> held_;
};

}  // namespace starmesh
