#pragma once
// What the attention kernels share: their arguments, the row -> (query, head) map, masking,
// the online softmax over one tile, and the final store of (o, lse). Every thread holds two
// rows (g and g + 8 of its warp's 16) in the m16n8 accumulator order, for mma.sync and wgmma.
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

namespace starmesh::kernels {

struct KernelArgs {
  const __nv_bfloat16* q;
  const __nv_bfloat16* k;
  const __nv_bfloat16* v;
  void* o;     // bf16 [nq, hq, d], or f32 [splits, nq, hq, d] when partial
  float* lse;  // f32 [nq, hq], or [splits, nq, hq]
  int nq, nk, hq, hkv, group;
  int rows;  // query rows per head slot: nq, or nq * group when packing heads
  bool causal;
  int64_t diagonal;
  float scale_log2;  // scale * log2(e)
  bool pack_heads;
  int keys_per_split;
  bool partial;       // write f32 partial states at blockIdx.z
  bool group_order;   // wgmma kernel: blockIdx.x runs over (row block, q head of the group)
  bool lazy_rescale;  // wgmma kernel: a warp skips the output rescale when none of its row maxima moved
};

// Row r of the CTA's head slot -> (query index, q head).
__device__ __forceinline__ void row_to_query(const KernelArgs& a, int slot, int r, int& qi, int& h) {
  if (a.pack_heads) {
    qi = r / a.group;
    h = slot * a.group + r % a.group;
  } else {
    qi = r;
    h = slot;
  }
}

// The keys a CTA of `rows_per_cta` rows starting at row0 works on, for split `split`:
// [k_begin, k_end) of the split, cut at k_limit by the causal diagonal of its last row;
// qi_first is the query of its first row (for mask_scores).
struct KeyWindow {
  int k_begin, k_end, k_limit, qi_first;
  __device__ int tiles(int keys_per_tile) const {
    return k_limit > k_begin ? (k_limit - k_begin + keys_per_tile - 1) / keys_per_tile : 0;
  }
};
__device__ __forceinline__ KeyWindow key_window(const KernelArgs& a, int slot, int row0, int rows_per_cta, int split) {
  KeyWindow w;
  w.k_begin = split * a.keys_per_split;
  w.k_end = min(a.nk, w.k_begin + a.keys_per_split);
  w.k_limit = w.k_end;
  int qi, h;
  row_to_query(a, slot, min(row0 + rows_per_cta, a.rows) - 1, qi, h);
  if (a.causal) {
    const int64_t last_visible = int64_t(qi) + a.diagonal + 1;  // exclusive
    w.k_limit = last_visible < w.k_begin ? w.k_begin : (last_visible < w.k_end ? int(last_visible) : w.k_end);
  }
  row_to_query(a, slot, row0, w.qi_first, h);
  return w;
}

// Masks (sets to -inf) keys past k_end or past the causal diagonal; tiles that cross neither
// are left alone. s[j][e]: key base + 8j + 2*t4 + (e & 1), row (e >> 1) of the thread's two.
template <int NB>
__device__ __forceinline__ void mask_scores(const KernelArgs& a, float (&s)[NB][4], int base, int k_end, int qi_first,
                                            const int (&row_qi)[2], int t4) {
  const bool edge = base + NB * 8 > k_end || (a.causal && int64_t(base + NB * 8 - 1) > int64_t(qi_first) + a.diagonal);
  if (!edge) return;
#pragma unroll
  for (int j = 0; j < NB; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int key = base + 8 * j + 2 * t4 + (e & 1);
      if (key >= k_end || (a.causal && int64_t(key) > int64_t(row_qi[e >> 1]) + a.diagonal)) s[j][e] = -INFINITY;
    }
}

// 2^x on the special-function unit (2^-inf = 0).
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// Folds one tile of raw scores into the running max m (log2 domain) and sum l; leaves
// exp2(s * scale_log2 - m) in s (the scale rides in the same FFMA as the max) and the factor
// the output accumulated so far must be scaled by in alpha. The 4 threads of a quad share a row.
template <int NB_S>
__device__ __forceinline__ void softmax_step(float (&s)[NB_S][4], float (&m_run)[2], float (&l_run)[2],
                                             float scale_log2, float (&alpha)[2]) {
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    float mx = -INFINITY;
#pragma unroll
    for (int j = 0; j < NB_S; ++j) mx = fmaxf(mx, fmaxf(s[j][2 * hr], s[j][2 * hr + 1]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float m_new = fmaxf(m_run[hr], mx * scale_log2);  // scale > 0: the max commutes
    const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // a row that saw nothing yet stays at 0
    alpha[hr] = fast_exp2(m_run[hr] - m_use);
    m_run[hr] = m_new;
    float sum = 0.0f;
#pragma unroll
    for (int j = 0; j < NB_S; ++j) {
      s[j][2 * hr] = fast_exp2(fmaf(s[j][2 * hr], scale_log2, -m_use));
      s[j][2 * hr + 1] = fast_exp2(fmaf(s[j][2 * hr + 1], scale_log2, -m_use));
      sum += s[j][2 * hr] + s[j][2 * hr + 1];
    }
    l_run[hr] = l_run[hr] * alpha[hr] + sum;
  }
}

template <int NB_O>
__device__ __forceinline__ void rescale_rows(float (&acc)[NB_O][4], const float (&alpha)[2]) {
#pragma unroll
  for (int j = 0; j < NB_O; ++j) {
    acc[j][0] *= alpha[0];
    acc[j][1] *= alpha[0];
    acc[j][2] *= alpha[1];
    acc[j][3] *= alpha[1];
  }
}

// rescale_rows, skipped when no row of the warp changed its max (alpha == 1 everywhere):
// once the running maxima settle, most tiles of a long row need no rescale.
template <int NB_O>
__device__ __forceinline__ void rescale_rows_if_moved(float (&acc)[NB_O][4], const float (&alpha)[2]) {
  if (__any_sync(0xffffffffu, alpha[0] != 1.0f || alpha[1] != 1.0f)) rescale_rows(acc, alpha);
}

// softmax_step, then the output rescaled at once (kernels without an MMA in flight on acc).
template <int NB_S, int NB_O>
__device__ __forceinline__ void online_softmax(float (&s)[NB_S][4], float (&acc)[NB_O][4], float (&m_run)[2],
                                               float (&l_run)[2], float scale_log2) {
  float alpha[2];
  softmax_step(s, m_run, l_run, scale_log2, alpha);
  rescale_rows(acc, alpha);
}

// Writes the thread's two rows (first_row and first_row + 8 of the head slot): o = acc / l,
// lse = (m + log2 l) ln 2; empty rows get o = 0, lse = -inf.
template <int NB_O>
__device__ __forceinline__ void store_rows(const KernelArgs& a, int slot, int first_row, int t4, int split,
                                           const float (&acc)[NB_O][4], const float (&m_run)[2],
                                           const float (&l_run)[2]) {
  constexpr int D = NB_O * 8;
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    float l = l_run[hr];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const int r = first_row + 8 * hr;
    if (r >= a.rows) continue;
    int qi, h;
    row_to_query(a, slot, r, qi, h);
    const bool empty = l == 0.0f;
    const float inv = empty ? 0.0f : 1.0f / l;
    const float lse = empty ? -INFINITY : (m_run[hr] + log2f(l)) * 0.69314718055994531f;
    const size_t row_index = (size_t(a.partial ? split : 0) * a.nq + qi) * a.hq + h;
    if (t4 == 0) a.lse[row_index] = lse;
#pragma unroll
    for (int j = 0; j < NB_O; ++j) {
      const int col = 8 * j + 2 * t4;
      const float x0 = acc[j][2 * hr] * inv, x1 = acc[j][2 * hr + 1] * inv;
      if (a.partial) {
        *reinterpret_cast<float2*>(static_cast<float*>(a.o) + row_index * D + col) = make_float2(x0, x1);
      } else {
        *reinterpret_cast<__nv_bfloat162*>(static_cast<__nv_bfloat16*>(a.o) + row_index * D + col) =
            __floats2bfloat162_rn(x0, x1);
      }
    }
  }
}

}  // namespace starmesh::kernels
