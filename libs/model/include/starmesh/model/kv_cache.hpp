#pragma once
// Per-layer key/value storage of one sequence on one backend, with a fixed capacity in tokens.
// New rows are written layer by layer (write), then made visible for all layers at once
// (commit), so a forward pass that fails halfway leaves the cache as it was.
#include <vector>

#include "starmesh/backend/backend.hpp"

namespace starmesh {

class KvCache {
 public:
  static Expected<KvCache> create(backend_i& backend, int layers, int64_t capacity, int64_t kv_heads, int64_t head_dim);

  int layers() const { return int(keys_.size()); }
  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }

  // Rows [0, length() + extra) of layer `layer`: [rows, kv_heads, head_dim], activation dtype.
  Tensor keys(int layer, int64_t extra = 0) const { return keys_[size_t(layer)].rows(0, length_ + extra); }
  Tensor values(int layer, int64_t extra = 0) const { return values_[size_t(layer)].rows(0, length_ + extra); }

  // Writes k, v [n, kv_heads, head_dim] at rows [length(), length() + n) of one layer.
  Status write(int layer, const Tensor& k, const Tensor& v);
  // Those rows themselves (keys, values), for an op that writes them directly (rope_store_kv).
  struct NewRows {
    Tensor keys, values;
  };
  Expected<NewRows> new_rows(int layer, int64_t n) const;
  // Makes n written rows part of the cache.
  Status commit(int64_t n);
  // Drops everything after the first n rows.
  Status truncate(int64_t n);

 private:
  backend_i* backend_ = nullptr;
  std::vector<Tensor> keys_, values_;  // each [capacity, kv_heads, head_dim]
  int64_t capacity_ = 0;
  int64_t length_ = 0;
};

}  // namespace starmesh
