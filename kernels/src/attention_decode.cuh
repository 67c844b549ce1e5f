#pragma once
// The decode kernel (attention_decode.cu), for the dispatcher in attention.cu: at most 16 query
// rows (a decode step's q heads of one kv head, packed), keys split over blockIdx.z.
#include <cuda_runtime.h>

#include "attention_common.cuh"

namespace starmesh::kernels {

inline constexpr int kDecodeMaxRows = 16;

// Keys in several places (Star Attention's shards on one device): segment s holds k[s], v[s]
// [nk[s], hkv, d] and owns splits [first_split[s], first_split[s + 1]) of keys_per_split keys.
inline constexpr int kMaxKeySegments = 8;
struct KeySegmentTable {
  const __nv_bfloat16* k[kMaxKeySegments] = {};
  const __nv_bfloat16* v[kMaxKeySegments] = {};
  int nk[kMaxKeySegments] = {};
  int first_split[kMaxKeySegments + 1] = {};
  int count = 0;
};

// Many decode queries at once, each over its own segments (a batch of requests' phase-2
// steps): CTA column blockIdx.x is item first_item + x, whose q row, partial rows and keys
// are its own; its splits past its own count write empty states. 16 items keep the kernel's
// parameters under 4 KB.
inline constexpr int kBatchTableItems = 16;
struct KeyBatchItem {
  const __nv_bfloat16* k[kMaxKeySegments] = {};
  const __nv_bfloat16* v[kMaxKeySegments] = {};
  int nk[kMaxKeySegments] = {};
  int first_split[kMaxKeySegments + 1] = {};
  int count = 0;
  int keys_per_split = 0;
};
struct KeyBatchTable {
  KeyBatchItem item[kBatchTableItems];
  int first_item = 0;
};
static_assert(sizeof(KernelArgs) + sizeof(KeyBatchTable) <= 4096, "a batch launch's parameters fit in 4 KB");

// d = 64 or 128; stages = 2 or 3 K/V tiles in the ring; `slots` head slots (kv heads when
// packing). Writes f32 partials at blockIdx.z when ka.partial.
cudaError_t attention_decode(const KernelArgs& ka, int d, int slots, int splits, int stages, cudaStream_t stream);
// The same over the table's segments (ka.k, v, nk unused; ka.keys_per_split the table's; no mask):
// partial f32 states at every split of every segment, which the caller merges.
cudaError_t attention_decode_segments(const KernelArgs& ka, const KeySegmentTable& table, int d, int slots, int stages,
                                      cudaStream_t stream);
// The batch: `items` (<= kBatchTableItems) columns of the table, `splits` splits each
// (the most any item has). ka.q, o, lse point at item 0's rows; ka.nq is the whole batch's
// item count (the partials' stride); ka.rows one query's packed rows.
cudaError_t attention_decode_batch(const KernelArgs& ka, const KeyBatchTable& table, int items, int d, int slots,
                                   int splits, int stages, cudaStream_t stream);

}  // namespace starmesh::kernels
