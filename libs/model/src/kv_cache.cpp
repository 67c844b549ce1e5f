#include "starmesh/model/kv_cache.hpp"

namespace starmesh {

Expected<KvCache> KvCache::create_paged(KvCache c, const KvPaging& paging, int layers, int64_t kv_heads,
                                        int64_t head_dim) {
  const DType act = c.backend_->activation_dtype();
  const int64_t row_bytes = kv_heads * head_dim * int64_t(dtype_size(act));
  const int64_t tensors = 2 * int64_t(layers);
  if (!paging.arena || paging.arena->device() != c.backend_->device() || paging.page_tokens <= 0 ||
      paging.page_tokens * tensors * row_bytes != paging.arena->page_bytes())
    return make_error("kv cache: the page arena does not fit this model and backend (pages of ",
                      paging.arena ? paging.arena->page_bytes() : 0, " bytes, ", paging.page_tokens, " tokens of ",
                      tensors, " rows of ", row_bytes, " bytes)");
  // The 2 * layers tensors back to back, each of the capacity rounded to whole pages: together
  // exactly the cache's pages (kv_page_geometry), so a short cache (a query's own tokens)
  // takes a page or two, not a page per tensor.
  const int64_t rows = round_to_pages(c.capacity_, paging.page_tokens);
  SM_ASSIGN(range, paging.arena->reserve(rows / paging.page_tokens));
  SM_TRY(range->map(0, range->pages()));
  c.range_ = std::move(range);
  // Every view holds the range: its pages stay while any of them is in use.
  auto* base = static_cast<char*>(c.range_->base());
  const size_t tensor_bytes = size_t(rows) * size_t(row_bytes);
  for (int64_t t = 0; t < tensors; ++t) {
    Tensor x = Tensor::wrap(base + size_t(t) * tensor_bytes, act, {c.capacity_, kv_heads, head_dim},
                            c.backend_->device(), c.range_);
    (t % 2 == 0 ? c.keys_ : c.values_).push_back(std::move(x));
  }
  return c;
}

Expected<KvCache> KvCache::create(backend_i& backend, int layers, int64_t capacity, int64_t kv_heads, int64_t head_dim,
                                  const KvPaging* paging) {
  if (layers <= 0 || capacity < 0 || kv_heads <= 0 || head_dim <= 0)
    return make_error("kv cache: bad geometry (layers ", layers, ", capacity ", capacity, ", kv heads ", kv_heads,
                      ", head dim ", head_dim, ")");
  KvCache c;
  c.backend_ = &backend;
  c.capacity_ = capacity;
  if (paging && capacity > 0) return create_paged(std::move(c), *paging, layers, kv_heads, head_dim);
  for (int l = 0; l < layers; ++l) {
    SM_ASSIGN(k, backend.alloc(backend.activation_dtype(), {capacity, kv_heads, head_dim}));
    SM_ASSIGN(v, backend.alloc(backend.activation_dtype(), {capacity, kv_heads, head_dim}));
    c.keys_.push_back(std::move(k));
    c.values_.push_back(std::move(v));
  }
  return c;
}

Expected<KvCache::NewRows> KvCache::new_rows(int layer, int64_t n) const {
  if (layer < 0 || layer >= layers()) return make_error("kv cache: no layer ", layer);
  if (n < 0 || length_ + n > capacity_)
    return make_error("kv cache full: ", length_, " + ", n, " tokens exceed the capacity of ", capacity_,
                      " (raise the capacity or shorten the request)");
  return NewRows{keys_[size_t(layer)].rows(length_, length_ + n), values_[size_t(layer)].rows(length_, length_ + n)};
}

Status KvCache::write(int layer, const Tensor& k, const Tensor& v) {
  SM_ASSIGN(rows, new_rows(layer, k.dim(0)));
  SM_TRY(backend_->copy(k, rows.keys));
  return backend_->copy(v, rows.values);
}

Status KvCache::commit(int64_t n) {
  if (n < 0 || length_ + n > capacity_) return make_error("kv cache: cannot commit ", n, " rows");
  length_ += n;
  return {};
}

Status KvCache::truncate(int64_t n) {
  if (n < 0 || n > length_) return make_error("kv cache: cannot truncate to ", n, " of ", length_, " rows");
  length_ = n;
  return {};
}

}  // namespace starmesh
