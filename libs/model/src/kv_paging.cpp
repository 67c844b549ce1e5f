#include "starmesh/model/kv_paging.hpp"

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
  const int64_t tensors = 2 * int64_t(layers);
  const int64_t pages_per_tensor = max_pages / tensors;
  if (pages_per_tensor == 0)
    return make_error(ErrorCode::invalid_argument, "KV pages: ", layers, " layers need more than ", max_pages,
                      " pages");
  // The fewest tokens whose rows fill whole device pages.
  const int64_t unit = granularity / std::gcd(row_bytes, granularity);
  int64_t page_tokens = std::max(min_page_tokens, (capacity + pages_per_tensor - 1) / pages_per_tensor);
  page_tokens = round_to_pages(std::max<int64_t>(page_tokens, 1), unit);
  if (page_tokens > kMaxPageTokens || page_tokens > (int64_t(1) << 30) / row_bytes)
    return make_error(ErrorCode::invalid_argument, "KV pages: pages of ", page_tokens, " tokens of ", row_bytes,
                      " bytes are too large (at most ", kMaxPageTokens, " tokens and 1 GiB); lower the capacity");
  if (capacity < page_tokens)
    return make_error(ErrorCode::invalid_argument, "KV pages: a capacity of ", capacity,
                      " tokens is less than one page of ", page_tokens, "; raise it");
  KvPageGeometry g;
  g.page_tokens = page_tokens;
  g.page_bytes = page_tokens * row_bytes;
  g.capacity_tokens = capacity / page_tokens * page_tokens;  // a budget: never more than asked
  g.pages = tensors * (g.capacity_tokens / page_tokens);
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

}  // namespace starmesh
