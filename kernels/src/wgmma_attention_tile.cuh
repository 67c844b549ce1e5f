#pragma once
// The two products of an attention tile on warpgroup MMA, shared by the prefill and the
// split-KV kernels. Tiles are 128-byte swizzled in shared memory as [D / 64][rows][64] bf16:
// 64-column sub-tiles of 128-byte rows, each sub-tile 1024-byte aligned.
#include <cstdint>

#include "attention_tile.cuh"
#include "wgmma_ops.cuh"

namespace starmesh::kernels::wgmma {

// Issues S = Q K^T for 64 query rows (Q sub-tiles q_rows apart) and 128 keys, 16 dims per
// instruction, and commits the group. The caller fences before and waits after.
template <int D, int QRows>
__device__ __forceinline__ void issue_qk(float (&s)[16][4], uint32_t q_base, uint32_t k_base) {
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    const uint32_t in_row = uint32_t((kk % 4) * 32);  // 16 dims = 32 bytes along the 128-byte row
    const uint64_t qd = descriptor(q_base + uint32_t((kk / 4) * QRows * 128) + in_row, 16, 1024);
    const uint64_t kd = descriptor(k_base + uint32_t((kk / 4) * 128 * 128) + in_row, 16, 1024);
    mma_ss_n128(s, qd, kd, kk > 0);
  }
  commit();
}

// Issues O += P V for 128 keys, 16 per instruction, and commits the group. V is [keys][dims],
// MN-major for this product: leading offset the next 64-dim sub-tile, stride the next 8 keys.
template <int D>
__device__ __forceinline__ void issue_pv(float (&acc)[D / 8][4], const uint32_t (&p)[8][4], uint32_t v_base) {
#pragma unroll
  for (int kk = 0; kk < 8; ++kk) {
    const uint64_t vd = descriptor(v_base + uint32_t(kk * 16 * 128), uint32_t(128 * 128), 1024);
    if constexpr (D == 128)
      mma_rs_n128_tb(acc, p[kk], vd);
    else
      mma_rs_n64_tb(acc, p[kk], vd);
  }
  commit();
}

// P = the softmaxed scores as bf16 pairs in the A-fragment order of issue_pv.
__device__ __forceinline__ void scores_to_p(uint32_t (&p)[8][4], const float (&s)[16][4]) {
#pragma unroll
  for (int kk = 0; kk < 8; ++kk) {
    p[kk][0] = tile::pack_bf16(s[2 * kk][0], s[2 * kk][1]);
    p[kk][1] = tile::pack_bf16(s[2 * kk][2], s[2 * kk][3]);
    p[kk][2] = tile::pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
    p[kk][3] = tile::pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
  }
}

}  // namespace starmesh::kernels::wgmma
