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

Status KvCache::write(int layer, const Tensor& k, const Tensor& v) {
  if (layer < 0 || layer >= layers()) return make_error("kv cache: no layer ", layer);
  const int64_t n = k.dim(0);
  if (length_ + n > capacity_)
    return make_error("kv cache full: ", length_, " + ", n, " tokens exceed the capacity of ", capacity_,
                      " (raise the capacity or shorten the request)");
  SM_TRY(backend_->copy(k, keys_[size_t(layer)].rows(length_, length_ + n)));
  return backend_->copy(v, values_[size_t(layer)].rows(length_, length_ + n));
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
