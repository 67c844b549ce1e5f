#pragma once
// The decode attention kernel (attention_decode.cu): one query row, split-KV, every thread
// streaming keys. Internal to kernels/; attention_forward chooses it through the plan.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "starmesh/kernels/attention.hpp"

namespace starmesh::kernels {

struct DecodeArgs {
  const __nv_bfloat16* q = nullptr;  // [1, hq, d]
  const __nv_bfloat16* k = nullptr;  // [nk, hkv, d]
  const __nv_bfloat16* v = nullptr;
  int hq = 0, hkv = 0;
  int visible = 0;  // keys [0, visible) are seen (the causal mask of one row cuts a prefix)
  int keys_per_split = 0;
  float scale_log2 = 0;
  // Split > 1: partial states, f32 o [splits, hq, d] and natural-log lse [splits, hq];
  // else the result, bf16 o [hq, d] and lse [hq].
  float* o_parts = nullptr;
  float* lse_parts = nullptr;
  __nv_bfloat16* o = nullptr;
  float* lse = nullptr;
};

// The keys one query row sees: all of them, or the prefix its causal mask leaves.
inline int64_t decode_visible_keys(const AttentionArgs& a) {
  if (!a.causal) return a.nk;
  const int64_t last = a.diagonal + 1;  // row 0 sees keys j <= diagonal
  return last < 0 ? 0 : (last > a.nk ? a.nk : last);
}

// Head dims 64 and 128, q heads per kv head 1, 2, 4 or 8.
bool decode_supports(int d, int group);
// How many of its CTAs fit on one multiprocessor at once (whole waves avoid a tail).
int decode_ctas_per_sm(int d, int group);
// Keys per tile: splits should hold whole tiles.
int decode_tile_keys(int d);
cudaError_t attention_decode(const DecodeArgs& a, int d, int splits, cudaStream_t stream);

}  // namespace starmesh::kernels
