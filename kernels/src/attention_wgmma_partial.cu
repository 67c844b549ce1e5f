// Phase-2 partial attention on Hopper (sm_90a): a few query rows (the q heads of one kv head
// packed together) against a long KV shard, split over the keys. One warpgroup per CTA owns
// 64 rows; thread 0 streams K/V tiles through shared-memory stages with the
// bulk tensor copy engine (TMA, mbarriers). S = Q K^T and O += P V run on warpgroup MMA, which
// reads K and V from shared memory once for all 64 rows (the mma.sync kernel reads them once
// per warp of 16 rows: four times). The kernel is memory-bound: the stages keep the next
// tiles' loads in flight while the math of the current one runs.
#include <cuda.h>
#include <cuda_bf16.h>

#include "attention_common.cuh"
#include "attention_tile.cuh"
#include "attention_wgmma.cuh"
#include "hopper_async.cuh"
#include "tensor_maps.hpp"
#include "wgmma_attention_tile.cuh"
#include "wgmma_ops.cuh"

namespace starmesh::kernels {
namespace {

using namespace tile;
using namespace hopper;

// 128-key tiles in three stages fill shared memory: one CTA per SM (measured against 64-key
// tiles in two stages with two CTAs per SM: 3-7% faster, bench/NOTES.md).
template <int D_>
struct PartialConfig {
  static constexpr int D = D_;
  static constexpr int kThreads = 128;  // one warpgroup
  static constexpr int kBlockM = 64;    // packed query rows per CTA
  static constexpr int kBlockN = 128;   // keys per tile
  static constexpr int kStages = 3;
  static constexpr uint32_t kQBytes = kBlockM * D * 2;
  static constexpr uint32_t kTileBytes = kBlockN * D * 2;  // K or V
  static constexpr size_t kSmemBytes = kQBytes + 2 * kStages * size_t(kTileBytes) + 8 * (1 + kStages) + 1024;
};

template <class Cfg>
__global__ void __launch_bounds__(Cfg::kThreads, 1)
    attention_wgmma_partial_kernel(const KernelArgs a, const __grid_constant__ CUtensorMap tm_q,
                                   const __grid_constant__ CUtensorMap tm_k, const __grid_constant__ CUtensorMap tm_v) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int D = Cfg::D, BM = Cfg::kBlockM, BN = Cfg::kBlockN, S = Cfg::kStages;
  extern __shared__ unsigned char smem_raw[];
  const uint32_t sq = (smem_addr(smem_raw) + 1023) & ~1023u;  // swizzled tiles: 1024-byte aligned
  const uint32_t sk = sq + Cfg::kQBytes;                      // stage s at sk + s * kTileBytes
  const uint32_t sv = sk + S * Cfg::kTileBytes;
  const uint32_t bar_q = sv + S * Cfg::kTileBytes;
  auto full = [&](int s) { return bar_q + 8u * uint32_t(1 + s); };

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int slot = blockIdx.y;  // kv head when packing, else q head
  const int kvh = a.pack_heads ? slot : slot / a.group;
  const int row0 = blockIdx.x * BM;
  const int split = blockIdx.z;
  const KeyWindow win = key_window(a, slot, row0, BM, split);
  const int k_begin = win.k_begin, k_end = win.k_end, qi_first = win.qi_first;
  const int n_tiles = win.tiles(BN);

  auto load_tile = [&](int t) {
    const int s = t % S;
    mbar_arrive_expect_tx(full(s), 2 * Cfg::kTileBytes);
    for (int c = 0; c < D / 64; ++c) {
      const uint32_t sub = s * Cfg::kTileBytes + uint32_t(c * BN * 128);
      tma_load_3d(sk + sub, &tm_k, full(s), c * 64, kvh, k_begin + t * BN);
      tma_load_3d(sv + sub, &tm_v, full(s), c * 64, kvh, k_begin + t * BN);
    }
  };
  if (tid == 0) {
    mbar_init(bar_q, 1);
    for (int s = 0; s < S; ++s) mbar_init(full(s), 1);
    mbar_init_fence();
  }
  __syncthreads();
  if (tid == 0 && n_tiles > 0) {
    // Packed rows are (query, head of the group) pairs: a box of group heads x 64 / group
    // queries lands as 64 rows in that order.
    const int box_heads = a.pack_heads ? a.group : 1;
    mbar_arrive_expect_tx(bar_q, Cfg::kQBytes);
    for (int c = 0; c < D / 64; ++c)
      tma_load_3d(sq + uint32_t(c * BM * 128), &tm_q, bar_q, c * 64, a.pack_heads ? slot * a.group : slot,
                  row0 / box_heads);
    for (int t = 0; t < S && t < n_tiles; ++t) load_tile(t);
  }

  const int g = lane / 4, t4 = lane % 4;
  const int first_row = row0 + warp * 16 + g;
  int row_qi[2];
  {
    int h;
    row_to_query(a, slot, first_row, row_qi[0], h);
    row_to_query(a, slot, first_row + 8, row_qi[1], h);
  }
  float acc[D / 8][4];
#pragma unroll
  for (int j = 0; j < D / 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
  float m_run[2] = {-INFINITY, -INFINITY};
  float l_run[2] = {0.0f, 0.0f};
  uint32_t p[BN / 16][4];

  if (n_tiles > 0) mbar_wait(bar_q, 0);
  for (int t = 0; t < n_tiles; ++t) {
    const int s = t % S;
    mbar_wait(full(s), uint32_t(t / S) & 1);
    const uint32_t k_base = sk + s * Cfg::kTileBytes, v_base = sv + s * Cfg::kTileBytes;
    float sc[BN / 8][4];
    wgmma::fence();
    wgmma::issue_qk<D, BM>(sc, sq, k_base);
    wgmma::wait<0>();
    wgmma::pin(sc);

    mask_scores(a, sc, k_begin + t * BN, k_end, qi_first, row_qi, t4);
    float alpha[2];
    softmax_step(sc, m_run, l_run, a.scale_log2, alpha);
    rescale_rows_if_moved(acc, alpha);
    wgmma::scores_to_p(p, sc);
    wgmma::pin(acc);
    wgmma::pin(p);
    wgmma::fence();
    wgmma::issue_pv<D>(acc, p, v_base);
    wgmma::wait<0>();
    wgmma::pin(acc);
    __syncthreads();  // every warp is done with stage s: refill it
    if (tid == 0 && t + S < n_tiles) load_tile(t + S);
  }
  store_rows(a, slot, first_row, t4, split, acc, m_run, l_run);
#else
  __trap();  // built for another architecture: the dispatcher never picks this kernel there
#endif
}

template <int D>
cudaError_t launch(const KernelArgs& ka, int splits, cudaStream_t stream) {
  using Cfg = PartialConfig<D>;
  const int box_heads = ka.pack_heads ? ka.group : 1;
  CUtensorMap tq, tk, tv;
  if (!make_tile_map(&tq, ka.q, ka.nq, ka.hq, D, box_heads, Cfg::kBlockM / box_heads) ||
      !make_tile_map(&tk, ka.k, ka.nk, ka.hkv, D, 1, Cfg::kBlockN) ||
      !make_tile_map(&tv, ka.v, ka.nk, ka.hkv, D, 1, Cfg::kBlockN))
    return cudaErrorInvalidValue;
  const cudaError_t e = cudaFuncSetAttribute(attention_wgmma_partial_kernel<Cfg>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, int(Cfg::kSmemBytes));
  if (e != cudaSuccess) return e;
  const dim3 grid((ka.rows + Cfg::kBlockM - 1) / Cfg::kBlockM, ka.pack_heads ? ka.hkv : ka.hq, splits);
  attention_wgmma_partial_kernel<Cfg><<<grid, Cfg::kThreads, Cfg::kSmemBytes, stream>>>(ka, tq, tk, tv);
  return cudaGetLastError();
}

}  // namespace

bool attention_wgmma_partial_supports(const KernelArgs& ka) {
  // A tile of 64 packed rows must hold whole groups; the copy engine needs aligned tensors.
  return (!ka.pack_heads || (ka.group <= 64 && 64 % ka.group == 0)) && tma_addressable(ka.q) && tma_addressable(ka.k) &&
         tma_addressable(ka.v);
}

cudaError_t attention_wgmma_partial(const KernelArgs& ka, int d, int splits, cudaStream_t stream) {
  if (!attention_wgmma_partial_supports(ka)) return cudaErrorInvalidValue;
  switch (d) {
    case 64:
      return launch<64>(ka, splits, stream);
    case 128:
      return launch<128>(ka, splits, stream);
    default:
      return cudaErrorNotSupported;
  }
}

}  // namespace starmesh::kernels
