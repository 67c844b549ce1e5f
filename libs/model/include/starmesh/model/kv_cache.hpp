#pragma once
// Per-layer key/value storage of one sequence on one backend, with a fixed capacity in tokens.
// New rows are written layer by layer (write), then made visible for all layers at once
// (commit), so a forward pass that fails halfway leaves the cache as it was.
// A paged cache (kv_paging.hpp) takes its pages of the arena when it is made (its capacity is
// booked in full anyway, and so no forward pass waits for pages while it holds the device);
// they go back to the arena when the cache and its views are gone.
#include <memory>
#include <vector>

#include "starmesh/backend/backend.hpp"
#include "starmesh/model/kv_paging.hpp"

namespace starmesh {

class KvCache {
 public:
  // `paging` null: plain allocations of the whole capacity.
  static Expected<KvCache> create(backend_i& backend, int layers, int64_t capacity, int64_t kv_heads, int64_t head_dim,
                                  const KvPaging* paging = nullptr);

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

  // The arena pages this cache holds (0: not paged).
  int64_t pages_held() const { return range_ ? range_->mapped() : 0; }

 private:
  static Expected<KvCache> create_paged(KvCache c, const KvPaging& paging, int layers, int64_t kv_heads,
                                        int64_t head_dim);
  backend_i* backend_ = nullptr;
  std::vector<Tensor> keys_, values_;  // each [capacity, kv_heads, head_dim]
  int64_t capacity_ = 0;
  int64_t length_ = 0;
  std::shared_ptr<page_range_i> range_;  // paged: tensor t's rows from page t * (pages a tensor)
};

}  // namespace starmesh
