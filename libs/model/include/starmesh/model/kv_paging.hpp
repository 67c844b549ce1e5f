#pragma once
// How a worker's KV caches take their memory: pages of one arena (page_arena.hpp), each page
// the KV of `page_tokens` tokens, every layer's key and value rows. A cache of n tokens holds
// ceil(n / page_tokens) pages, mapped when it is made, its tensors back to back in them; so KV
// is booked in whole pages (round_to_pages) by the worker and the router alike.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "starmesh/backend/page_arena.hpp"
#include "starmesh/core/expected.hpp"

namespace starmesh {

class Transformer;

// The largest page a worker may book in (a peer's claim beyond it is refused).
constexpr int64_t kMaxPageTokens = int64_t(1) << 20;

struct KvPaging {
  std::shared_ptr<page_arena_i> arena;
  int64_t page_tokens = 0;
};

// `tokens` rounded up to whole pages of `page_tokens` (0 or 1: no rounding).
constexpr int64_t round_to_pages(int64_t tokens, int64_t page_tokens) {
  return page_tokens <= 1 ? tokens : (tokens + page_tokens - 1) / page_tokens * page_tokens;
}

struct KvPageGeometry {
  int64_t page_tokens = 0;      // tokens' KV (every layer's key and value rows) per page
  int64_t page_bytes = 0;       // page_tokens * 2 * layers * row bytes: whole device pages
  int64_t pages = 0;            // in the arena
  int64_t capacity_tokens = 0;  // what those pages hold: the capacity asked, in whole pages (down)
};

// The pages for `capacity` tokens of KV of a model of `layers` layers whose one token of one
// layer's keys takes `row_bytes`: pages of at least `min_page_tokens` tokens, each a whole
// number of `granularity` bytes, at most `max_pages` of them (pages grow to fit).
Expected<KvPageGeometry> kv_page_geometry(int64_t row_bytes, int layers, int64_t capacity, int64_t min_page_tokens,
                                          int64_t granularity, int64_t max_pages);

// Whether `capacity` tokens of KV (`token_bytes` each: every layer's key and value rows) fit
// in `free_bytes` with `reserve_bytes` left for activations; unknown free memory passes.
// Refuses naming the flag, both sizes and the most that fits.
Status check_kv_fits(int64_t capacity, int64_t token_bytes, std::optional<int64_t> free_bytes, int64_t reserve_bytes,
                     const std::string& device);
// The same for `model` on its backend, now: the reserve is a tenth of the free memory, at
// least 1 GiB (a prefill chunk's activations and workspaces).
Status check_kv_fits(const Transformer& model, int64_t capacity);

// Puts `model`'s booked KV (its shards and query tokens: Transformer::make_cache) in pages of
// one arena on its backend, for `capacity` tokens in pages of at least `min_page_tokens`; a
// map short of pages waits up to `wait` (a freed cache's pages come back when its last user
// lets go). A backend without an arena keeps whole allocations, booked in the same pages.
// Call before the model serves: it changes how every later cache is made.
Expected<KvPageGeometry> page_kv(Transformer& model, int64_t capacity, int64_t min_page_tokens,
                                 std::chrono::milliseconds wait);

}  // namespace starmesh
