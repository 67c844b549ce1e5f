#pragma once
// Building blocks of the tiled attention kernel: bf16 tensor-core MMA (m16n8k16), ldmatrix,
// cp.async with zero fill, and the XOR swizzle of shared-memory tiles.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace starmesh::kernels::tile {

// A tile of `Rows` x D bf16 in shared memory, stored in 16-byte chunks whose index is XORed
// with the row (mod 8), so that ldmatrix over 8 rows of one column hits 8 different banks.
template <int D>
__device__ __forceinline__ uint32_t swizzled_offset(int row, int col) {
  static_assert(D % 64 == 0, "rows must hold at least 8 chunks of 16 bytes");
  const int chunk = (col >> 3) ^ (row & 7);
  return uint32_t(row * D + (chunk << 3) + (col & 7));
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared; src_bytes 0 fills the destination with zeros.
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2,
                                                  uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}

// d += a * b: a 16x16 bf16 (row), b 16x8 bf16 (col), d 16x8 f32.
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// O += P V for 16 keys from `key0`: P (the A operand, 16 rows x those keys) packed from the
// S accumulators, V [keys, D] in swizzled shared memory read with ldmatrix.trans.
template <int D>
__device__ __forceinline__ void accumulate_pv(float (&acc)[D / 8][4], const uint32_t (&p)[4], const __nv_bfloat16* sv,
                                              int key0, int lane) {
#pragma unroll
  for (int n0 = 0; n0 < D / 8; n0 += 2) {
    const int key = key0 + (lane % 8) + 8 * ((lane / 8) % 2);
    const int col = n0 * 8 + 8 * (lane / 16);
    uint32_t b0, b1, b2, b3;
    ldmatrix_x4_trans(smem_addr(sv + swizzled_offset<D>(key, col)), b0, b1, b2, b3);
    mma_bf16(acc[n0], p, b0, b1);
    mma_bf16(acc[n0 + 1], p, b2, b3);
  }
}

}  // namespace starmesh::kernels::tile
