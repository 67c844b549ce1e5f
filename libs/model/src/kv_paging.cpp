#include "starmesh/model/kv_paging.hpp"

#include <algorithm>
#include <cstdio>
#include <numeric>

#include "starmesh/model/transformer.hpp"

namespace starmesh {

Expected<KvPageGeometry> kv_page_geometry(int64_t row_bytes, int layers, int64_t capacity, int64_t min_page_tokens,
                                          int64_t granularity, int64_t max_pages) {
  constexpr int64_t kMaxCapacity = int64_t(1) << 40;  // keeps every product below in range
  if (row_bytes <= 0 || row_bytes > (int64_t(1) << 20) || layers <= 0 || layers > 4096 || capacity <= 0 ||
      capacity > kMaxCapacity || min_page_tokens < 0 || min_page_tokens > (int64_t(1) << 20) || granularity <= 0 ||
      granularity > (int64_t(1) << 30) || max_pages <= 0)
    return make_error(ErrorCode::invalid_argument, "KV pages: bad geometry (row ", row_bytes, " bytes, ", layers,
                      " layers, capacity ", capacity, ", page of at least ", min_page_tokens, " tokens)");
  // A page holds page_tokens tokens of a cache: their key and value rows of every layer. A
  // cache lays its 2 * layers tensors back to back in its pages (KvCache::create_paged), so it
  // wastes less than one page, whatever its length.
  const int64_t token_bytes = 2 * int64_t(layers) * row_bytes;
  // The fewest tokens whose KV fills whole device pages.
  const int64_t unit = granularity / std::gcd(token_bytes, granularity);
  int64_t page_tokens = std::max(min_page_tokens, (capacity + max_pages - 1) / max_pages);
  page_tokens = round_to_pages(std::max<int64_t>(page_tokens, 1), unit);
  if (page_tokens > kMaxPageTokens || page_tokens > (int64_t(1) << 30) / token_bytes)
    return make_error(ErrorCode::invalid_argument, "KV pages: pages of ", page_tokens, " tokens of ", token_bytes,
                      " bytes are too large (at most ", kMaxPageTokens, " tokens and 1 GiB); lower the capacity");
  if (capacity < page_tokens)
    return make_error(ErrorCode::invalid_argument, "KV pages: a capacity of ", capacity,
                      " tokens is less than one page of ", page_tokens, "; raise it");
  KvPageGeometry g;
  g.page_tokens = page_tokens;
  g.page_bytes = page_tokens * token_bytes;
  g.capacity_tokens = capacity / page_tokens * page_tokens;  // a budget: never more than asked
  g.pages = g.capacity_tokens / page_tokens;
  return g;
}

Expected<KvPageGeometry> page_kv(Transformer& model, int64_t capacity, int64_t min_page_tokens,
                                 std::chrono::milliseconds wait) {
  backend_i& be = model.backend();
  const int64_t granularity = be.page_granularity();
  constexpr int64_t kUnbounded = int64_t(1) << 40;  // no arena: pages only count
  SM_ASSIGN(g, kv_page_geometry(model.kv_row_bytes(), model.layers(), capacity, min_page_tokens,
                                granularity > 0 ? granularity : 1, granularity > 0 ? kMaxArenaPages : kUnbounded));
  if (granularity > 0) {
    SM_ASSIGN(arena, be.make_page_arena(g.page_bytes, g.pages, wait));
    model.set_kv_paging({std::move(arena), g.page_tokens});
  }
  return g;
}

Status check_kv_fits(int64_t capacity, int64_t token_bytes, std::optional<int64_t> free_bytes, int64_t reserve_bytes,
                     const std::string& device) {
  if (!free_bytes || capacity <= 0 || token_bytes <= 0) return {};
  const int64_t room = std::max<int64_t>(0, *free_bytes - reserve_bytes);
  const int64_t most = room / token_bytes;
  if (capacity <= most) return {};
  constexpr double kGiB = 1024.0 * 1024 * 1024;
  char need[64], have[64], keep[64];
  // The product in double: capacity * token_bytes may not fit 64 bits.
  std::snprintf(need, sizeof need, "%.1f GiB", double(capacity) * double(token_bytes) / kGiB);
  std::snprintf(have, sizeof have, "%.1f GiB", double(*free_bytes) / kGiB);
  std::snprintf(keep, sizeof keep, "%.1f GiB", double(reserve_bytes) / kGiB);
  return make_error(ErrorCode::invalid_argument, "--capacity ", capacity, " KV tokens need ", need, " (", token_bytes,
                    " bytes a token), but the ", device, " device has ", have, " free after the model's weights, ",
                    keep, " of it kept for activations: give --capacity at most ", most);
}

Status check_kv_fits(const Transformer& model, int64_t capacity) {
  const backend_i& be = model.backend();
  const std::optional<int64_t> free_bytes = be.free_memory_bytes();
  constexpr int64_t kGiB = int64_t(1) << 30;
  const int64_t reserve = free_bytes ? std::max(kGiB, *free_bytes / 10) : 0;
  return check_kv_fits(capacity, 2 * int64_t(model.layers()) * model.kv_row_bytes(), free_bytes, reserve, be.name());
}

}  // namespace starmesh
