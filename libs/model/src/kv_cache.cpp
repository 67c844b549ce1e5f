#include "starmesh/model/kv_cache.hpp"

namespace starmesh {

Expected<KvCache> KvCache::create(backend_i& backend, int layers, int64_t capacity, int64_t kv_heads,
                                  int64_t head_dim) {
  if (layers <= 0 || capacity < 0 || kv_heads <= 0 || head_dim <= 0)
    return make_error("kv cache: bad geometry (layers ", layers, ", capacity ", capacity, ", kv heads ", kv_heads,
                      ", head dim ", head_dim, ")");
  KvCache c;
  c.backend_ = &backend;
  c.capacity_ = capacity;
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
