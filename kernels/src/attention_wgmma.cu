// Prefill attention on Hopper's warpgroup MMA (wgmma, sm_90a): two warpgroups of 64 query
// rows each share 128-key K/V tiles streamed through shared memory by cp.async (two stages).
// S = Q K^T reads Q and K straight from shared memory (no ldmatrix through registers, the
// limit of the mma.sync kernel); O += P V takes P from registers and V from shared memory.
// Tiles use the 128-byte swizzle the tensor cores expect: 64-column sub-tiles, 128-byte rows,
// 16-byte chunk index XOR (row % 8), sub-tiles 1024-byte aligned.
#include <cuda_bf16.h>

#include "attention_common.cuh"
#include "attention_tile.cuh"
#include "attention_wgmma.cuh"
#include "wgmma_ops.cuh"

namespace starmesh::kernels {
namespace {

using namespace tile;

template <int D_, bool Pingpong_>
struct WgmmaConfig {
  static constexpr int D = D_;
  // Warpgroup 1 starts its S = Q K^T only when warpgroup 0 has finished its own, so one
  // warpgroup's softmax (ALU, MUFU) runs while the other's matrix products use the tensor cores.
  static constexpr bool kPingpong = Pingpong_;
  static constexpr int kWarpgroups = 2;
  static constexpr int kThreads = kWarpgroups * 128;
  static constexpr int kBlockM = kWarpgroups * 64;  // query rows per CTA
  static constexpr int kBlockN = 128;               // keys per tile
  static constexpr int kQElems = kBlockM * D;
  static constexpr int kTileElems = kBlockN * D;
  static constexpr size_t kSmemBytes = size_t(kQElems + 2 * 2 * kTileElems) * sizeof(__nv_bfloat16) + 1024;
};

// Element offset of (row, col) in a [D / 64][rows][64] tile with the 128-byte swizzle.
__device__ __forceinline__ uint32_t sw128_offset(int row, int col, int rows) {
  return uint32_t((col >> 6) * rows * 64 + row * 64 + ((((col & 63) >> 3) ^ (row & 7)) << 3) + (col & 7));
}

template <class Cfg>
__global__ void __launch_bounds__(Cfg::kThreads, 1) attention_wgmma_kernel(const KernelArgs a) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int D = Cfg::D, BM = Cfg::kBlockM, BN = Cfg::kBlockN, DC = D / 8;
  extern __shared__ unsigned char smem_raw[];
  // The swizzle is applied on address bits: tiles start on 1024-byte boundaries.
  const uint32_t raw = smem_addr(smem_raw);
  __nv_bfloat16* sq = reinterpret_cast<__nv_bfloat16*>(smem_raw + (((raw + 1023) & ~1023u) - raw));
  __nv_bfloat16* skv = sq + Cfg::kQElems;  // stage s: K at s * 2 * tile, V right after

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, wg = warp / 4;
  const int slot = blockIdx.y, kvh = slot / a.group;
  const int row0 = blockIdx.x * BM;
  const int k_end = a.nk;
  int k_limit = k_end;
  const int qi_first = row0;
  if (a.causal) {
    const int64_t last_visible = int64_t(min(row0 + BM, a.rows) - 1) + a.diagonal + 1;  // exclusive
    k_limit = last_visible < 0 ? 0 : (last_visible < k_end ? int(last_visible) : k_end);
  }
  const int n_tiles = (k_limit + BN - 1) / BN;

  for (int c = tid; c < BM * DC; c += Cfg::kThreads) {
    const int r = c / DC, col = (c % DC) * 8;
    const bool ok = row0 + r < a.rows;
    const __nv_bfloat16* src = a.q + (ok ? (size_t(row0 + r) * a.hq + slot) * D + col : 0);
    cp_async_16(smem_addr(sq + sw128_offset(r, col, BM)), src, ok ? 16 : 0);
  }
  auto load_kv = [&](int t, int stage) {
    __nv_bfloat16* sk = skv + stage * 2 * Cfg::kTileElems;
    __nv_bfloat16* sv = sk + Cfg::kTileElems;
    for (int c = tid; c < BN * DC; c += Cfg::kThreads) {
      const int r = c / DC, col = (c % DC) * 8;
      const int key = t * BN + r;
      const bool ok = key < k_limit;
      const size_t off = ok ? (size_t(key) * a.hkv + kvh) * D + col : 0;
      const uint32_t dst = sw128_offset(r, col, BN);
      cp_async_16(smem_addr(sk + dst), a.k + off, ok ? 16 : 0);
      cp_async_16(smem_addr(sv + dst), a.v + off, ok ? 16 : 0);
    }
  };
  if (n_tiles > 0) load_kv(0, 0);
  cp_async_commit();

  float acc[D / 8][4];
#pragma unroll
  for (int j = 0; j < D / 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
  float m_run[2] = {-INFINITY, -INFINITY};
  float l_run[2] = {0.0f, 0.0f};
  const int g = lane / 4, t4 = lane % 4;
  const int row_qi[2] = {row0 + warp * 16 + g, row0 + warp * 16 + g + 8};
  // This warpgroup's 64 rows of Q, per 64-column sub-tile.
  const uint32_t q_base = smem_addr(sq) + uint32_t(wg * 64 * 128);

  for (int t = 0; t < n_tiles; ++t) {
    if (t + 1 < n_tiles) load_kv(t + 1, (t + 1) % 2);
    cp_async_commit();
    cp_async_wait<1>();
    // cp.async wrote through the generic proxy; the tensor cores read through the async one.
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();
    const uint32_t k_base = smem_addr(skv + (t % 2) * 2 * Cfg::kTileElems);
    const uint32_t v_base = k_base + uint32_t(Cfg::kTileElems * sizeof(__nv_bfloat16));

    // S = Q K^T: 64 rows x 128 keys per warpgroup, k = 16 dims per instruction.
    float s[BN / 8][4];
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
    if (Cfg::kPingpong && wg == 1) asm volatile("bar.sync 1, 256;\n" ::: "memory");
    wgmma::fence();
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      const uint32_t in_row = uint32_t((kk % 4) * 32);  // 16 dims = 32 bytes along the 128-byte row
      const uint64_t qd = wgmma::descriptor(q_base + uint32_t((kk / 4) * BM * 128) + in_row, 16, 1024);
      const uint64_t kd = wgmma::descriptor(k_base + uint32_t((kk / 4) * BN * 128) + in_row, 16, 1024);
      wgmma::mma_ss_n128(s, qd, kd, kk > 0);
    }
    wgmma::commit();
    wgmma::wait<0>();
    if (Cfg::kPingpong && wg == 0) asm volatile("bar.arrive 1, 256;\n" ::: "memory");

    mask_scores(a, s, t * BN, k_end, qi_first, row_qi, t4);
    online_softmax(s, acc, m_run, l_run, a.scale_log2);

    // O += P V: 16 keys per instruction; V is [keys][dims], MN-major for this product.
    wgmma::fence();
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
      const uint32_t p[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                             pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                             pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
      // Leading offset: the next 64-dim sub-tile; stride: the next 8 keys.
      const uint64_t vd = wgmma::descriptor(v_base + uint32_t(kk * 16 * 128), uint32_t(BN * 128), 1024);
      if constexpr (D == 128) wgmma::mma_rs_n128_tb(acc, p, vd);
      else wgmma::mma_rs_n64_tb(acc, p, vd);
    }
    wgmma::commit();
    wgmma::wait<0>();
    __syncthreads();  // both warpgroups are done with this stage before it is refilled
  }
  cp_async_wait<0>();
  store_rows(a, slot, row0 + warp * 16 + g, t4, 0, acc, m_run, l_run);
#else
  __trap();  // built for another architecture: the dispatcher never picks this kernel there
#endif
}

template <int D, bool Pingpong>
cudaError_t launch(const KernelArgs& ka, cudaStream_t stream) {
  using Cfg = WgmmaConfig<D, Pingpong>;
  const cudaError_t e = cudaFuncSetAttribute(attention_wgmma_kernel<Cfg>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             int(Cfg::kSmemBytes));
  if (e != cudaSuccess) return e;
  const dim3 grid((ka.rows + Cfg::kBlockM - 1) / Cfg::kBlockM, ka.hq, 1);
  attention_wgmma_kernel<Cfg><<<grid, Cfg::kThreads, Cfg::kSmemBytes, stream>>>(ka);
  return cudaGetLastError();
}

}  // namespace

cudaError_t attention_wgmma(const KernelArgs& ka, int d, bool pingpong, cudaStream_t stream) {
  if (ka.pack_heads || ka.partial) return cudaErrorInvalidValue;  // one q head per CTA, no split
  switch (d) {
    case 64: return pingpong ? launch<64, true>(ka, stream) : launch<64, false>(ka, stream);
    case 128: return pingpong ? launch<128, true>(ka, stream) : launch<128, false>(ka, stream);
    default: return cudaErrorNotSupported;
  }
}

}  // namespace starmesh::kernels
