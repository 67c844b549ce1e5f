// Prefill attention on Hopper (sm_90a), warp-specialised: one producer warpgroup streams Q
// once and K/V tiles through the bulk tensor copy engine (TMA) into two shared-memory stages
// per operand, completing on mbarriers; two consumer warpgroups of 64 query rows each run
// S = Q K^T and O += P V on warpgroup MMA (wgmma) and the online softmax in registers.
// - Ping-pong: the consumers take turns issuing their matrix products (named barriers), so
//   one's softmax (ALU, MUFU) runs while the other's products use the tensor cores.
// - Overlap: inside a consumer, S of tile t and P V of tile t-1 are in flight together while
//   the softmax of tile t waits only for S.
// The producer gives its registers to the consumers (setmaxnreg). Tiles use the 128-byte
// swizzle both TMA and wgmma understand: 64-column sub-tiles of 128-byte rows, 16-byte chunk
// index XOR (row % 8), sub-tiles 1024-byte aligned.
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

template <int D_, bool Pingpong_, bool Overlap_>
struct WgmmaConfig {
  static constexpr int D = D_;
  static constexpr bool kPingpong = Pingpong_;
  static constexpr bool kOverlap = Overlap_;
  static constexpr int kThreads = 3 * 128;  // producer warpgroup + 2 consumer warpgroups
  static constexpr int kBlockM = 128;       // query rows per CTA, 64 per consumer
  static constexpr int kBlockN = 128;       // keys per tile
  static constexpr int kStages = 2;
  static constexpr int kProducerRegs = 24, kConsumerRegs = 240;  // 128 * (24 + 2 * 240) <= 64K
  static constexpr uint32_t kQBytes = kBlockM * D * 2;
  static constexpr uint32_t kTileBytes = kBlockN * D * 2;
  static constexpr int kBarriers = 1 + 4 * kStages;  // Q full; K full/empty, V full/empty per stage
  static constexpr size_t kSmemBytes = kQBytes + 2 * kStages * size_t(kTileBytes) + 8 * kBarriers + 1024;
};

template <class Cfg>
__global__ void __launch_bounds__(Cfg::kThreads, 1)
    attention_wgmma_kernel(const KernelArgs a, const __grid_constant__ CUtensorMap tm_q,
                           const __grid_constant__ CUtensorMap tm_k, const __grid_constant__ CUtensorMap tm_v) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int D = Cfg::D, BM = Cfg::kBlockM, BN = Cfg::kBlockN, S = Cfg::kStages;
  extern __shared__ unsigned char smem_raw[];
  // The swizzle is applied on address bits: tiles start on 1024-byte boundaries.
  const uint32_t sq = (smem_addr(smem_raw) + 1023) & ~1023u;
  const uint32_t sk = sq + Cfg::kQBytes;         // stage s at sk + s * kTileBytes
  const uint32_t sv = sk + S * Cfg::kTileBytes;  // likewise
  const uint32_t bars = sv + S * Cfg::kTileBytes;
  const uint32_t full_q = bars;
  auto full_k = [&](int s) { return bars + 8u * uint32_t(1 + s); };
  auto empty_k = [&](int s) { return bars + 8u * uint32_t(1 + S + s); };
  auto full_v = [&](int s) { return bars + 8u * uint32_t(1 + 2 * S + s); };
  auto empty_v = [&](int s) { return bars + 8u * uint32_t(1 + 3 * S + s); };

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, wg = warp / 4;
  // Group order: the q heads sharing a kv head take neighbouring CTAs, so each K/V tile comes
  // from device memory once and from L2 for the rest of the group.
  const int row_blocks = a.group_order ? int(gridDim.x) / a.group : int(gridDim.x);
  const int slot = a.group_order ? int(blockIdx.y) * a.group + int(blockIdx.x) % a.group : int(blockIdx.y);
  const int kvh = slot / a.group;
  const int block_index = a.group_order ? int(blockIdx.x) / a.group : int(blockIdx.x);
  // Causal rows late in the sequence see the most keys: start those first, so that the last
  // wave is made of short CTAs.
  const int row_block = a.causal ? row_blocks - 1 - block_index : block_index;
  const int row0 = row_block * BM;
  const int k_end = a.nk;
  int k_limit = k_end;
  if (a.causal) {
    const int64_t last_visible = int64_t(min(row0 + BM, a.rows) - 1) + a.diagonal + 1;  // exclusive
    k_limit = last_visible < 0 ? 0 : (last_visible < k_end ? int(last_visible) : k_end);
  }
  const int n_tiles = (k_limit + BN - 1) / BN;

  if (tid == 0) {
    mbar_init(full_q, 1);
    for (int s = 0; s < S; ++s) {
      mbar_init(full_k(s), 1);
      mbar_init(full_v(s), 1);
      mbar_init(empty_k(s), 8);  // lane 0 of each consumer warp
      mbar_init(empty_v(s), 8);
    }
    mbar_init_fence();
  }
  __syncthreads();

  if (wg == 0) {  // producer
    regs_decrease<Cfg::kProducerRegs>();
    if (tid == 0 && n_tiles > 0) {
      prefetch_tensor_map(&tm_k);
      prefetch_tensor_map(&tm_v);
      mbar_arrive_expect_tx(full_q, Cfg::kQBytes);
      for (int c = 0; c < D / 64; ++c) tma_load_3d(sq + uint32_t(c * BM * 128), &tm_q, full_q, c * 64, slot, row0);
      for (int t = 0; t < n_tiles; ++t) {
        const int s = t % S;
        const uint32_t use = uint32_t(t / S);
        if (t >= S) mbar_wait(empty_k(s), (use - 1) & 1);
        mbar_arrive_expect_tx(full_k(s), Cfg::kTileBytes);
        for (int c = 0; c < D / 64; ++c)
          tma_load_3d(sk + s * Cfg::kTileBytes + uint32_t(c * BN * 128), &tm_k, full_k(s), c * 64, kvh, t * BN);
        if (t >= S) mbar_wait(empty_v(s), (use - 1) & 1);
        mbar_arrive_expect_tx(full_v(s), Cfg::kTileBytes);
        for (int c = 0; c < D / 64; ++c)
          tma_load_3d(sv + s * Cfg::kTileBytes + uint32_t(c * BN * 128), &tm_v, full_v(s), c * 64, kvh, t * BN);
      }
    }
  } else {  // consumers
    regs_increase<Cfg::kConsumerRegs>();
    const int cw = wg - 1, g = lane / 4, t4 = lane % 4;
    const int first_row = row0 + cw * 64 + (warp % 4) * 16 + g;
    const int row_qi[2] = {first_row, first_row + 8};
    const uint32_t q_base = sq + uint32_t(cw * 64 * 128);  // this consumer's 64 rows of Q

    float acc[D / 8][4];
#pragma unroll
    for (int j = 0; j < D / 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
    float m_run[2] = {-INFINITY, -INFINITY};
    float l_run[2] = {0.0f, 0.0f};
    uint32_t p[BN / 16][4];  // P of the last tile, bf16 pairs in the A-fragment order

    auto issue_pv = [&](int s) { wgmma::issue_pv<D>(acc, p, sv + s * Cfg::kTileBytes); };
    auto release = [&](uint32_t bar) {
      if (lane == 0) mbar_arrive(bar);
    };

    // S = Q K^T for the tile in stage s: this consumer's 64 rows x 128 keys.
    auto issue_s = [&](float(&sc)[BN / 8][4], int s) { wgmma::issue_qk<D, BM>(sc, q_base, sk + s * Cfg::kTileBytes); };
    // Softmax of tile t's scores, in place; alpha: the factor for the output so far.
    auto softmax = [&](float(&sc)[BN / 8][4], int t, float(&alpha)[2]) {
      mask_scores(a, sc, t * BN, k_end, row0, row_qi, t4);
      softmax_step(sc, m_run, l_run, a.scale_log2, alpha);
    };
    auto to_p = [&](const float(&sc)[BN / 8][4]) { wgmma::scores_to_p(p, sc); };
    // Ping-pong turns: consumer cw waits on barrier 1 + cw and hands over on the other's.
    auto turn_begin = [&]() {
      if (Cfg::kPingpong) named_sync(1 + cw, 256);
    };
    auto turn_end = [&]() {
      if (Cfg::kPingpong) named_arrive(2 - cw, 256);
    };
    auto k_ready = [&](int t) { mbar_wait(full_k(t % S), uint32_t(t / S) & 1); };
    auto v_ready = [&](int t) { mbar_wait(full_v(t % S), uint32_t(t / S) & 1); };

    if (n_tiles > 0) {
      mbar_wait(full_q, 0);
      if (Cfg::kPingpong && cw == 1) named_arrive(1, 256);  // consumer 0 goes first
    }
    if constexpr (Cfg::kOverlap) {
      // Tile 0 alone, then each step issues S of tile t and P V of tile t - 1 together and
      // runs the softmax of t once S is in; the last P V closes.
      if (n_tiles > 0) {
        float sc[BN / 8][4], alpha[2];
        k_ready(0);
        turn_begin();
        wgmma::fence();
        issue_s(sc, 0);
        turn_end();
        wgmma::wait<0>();
        wgmma::pin(sc);
        release(empty_k(0));
        softmax(sc, 0, alpha);
        to_p(sc);
      }
      for (int t = 1; t < n_tiles; ++t) {
        float sc[BN / 8][4], alpha[2];
        const int prev = (t - 1) % S;
        k_ready(t);
        v_ready(t - 1);
        turn_begin();
        wgmma::pin(acc);
        wgmma::pin(p);
        wgmma::fence();
        issue_s(sc, t % S);
        issue_pv(prev);
        turn_end();
        wgmma::wait<1>();
        wgmma::pin(sc);
        release(empty_k(t % S));
        softmax(sc, t, alpha);
        wgmma::wait<0>();  // P V of tile t - 1 has read p and written acc
        wgmma::pin(acc);
        wgmma::pin(p);
        release(empty_v(prev));
        if (a.lazy_rescale)
          rescale_rows_if_moved(acc, alpha);
        else
          rescale_rows(acc, alpha);
        to_p(sc);
      }
      if (n_tiles > 0) {
        v_ready(n_tiles - 1);
        wgmma::pin(acc);
        wgmma::pin(p);
        wgmma::fence();
        issue_pv((n_tiles - 1) % S);
        wgmma::wait<0>();
        wgmma::pin(acc);
      }
    } else {
      for (int t = 0; t < n_tiles; ++t) {
        float sc[BN / 8][4], alpha[2];
        k_ready(t);
        turn_begin();
        wgmma::fence();
        issue_s(sc, t % S);
        turn_end();
        wgmma::wait<0>();
        wgmma::pin(sc);
        release(empty_k(t % S));
        softmax(sc, t, alpha);
        if (a.lazy_rescale)
          rescale_rows_if_moved(acc, alpha);
        else
          rescale_rows(acc, alpha);
        to_p(sc);
        v_ready(t);
        wgmma::pin(acc);
        wgmma::pin(p);
        wgmma::fence();
        issue_pv(t % S);
        wgmma::wait<0>();
        wgmma::pin(acc);
        release(empty_v(t % S));
      }
    }
    // Consumer 1's last hand-over is still pending: consumer 0 takes it, so both named
    // barriers end the CTA empty.
    if (Cfg::kPingpong && cw == 0 && n_tiles > 0) named_sync(1, 256);
    store_rows(a, slot, first_row, t4, 0, acc, m_run, l_run);
  }
#else
  __trap();  // built for another architecture: the dispatcher never picks this kernel there
#endif
}

template <int D, bool Pingpong, bool Overlap>
cudaError_t launch(const KernelArgs& ka, cudaStream_t stream) {
  using Cfg = WgmmaConfig<D, Pingpong, Overlap>;
  CUtensorMap tq, tk, tv;
  if (!make_tile_map(&tq, ka.q, ka.nq, ka.hq, D, 1, Cfg::kBlockM) ||
      !make_tile_map(&tk, ka.k, ka.nk, ka.hkv, D, 1, Cfg::kBlockN) ||
      !make_tile_map(&tv, ka.v, ka.nk, ka.hkv, D, 1, Cfg::kBlockN))
    return cudaErrorInvalidValue;
  const cudaError_t e = cudaFuncSetAttribute(attention_wgmma_kernel<Cfg>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             int(Cfg::kSmemBytes));
  if (e != cudaSuccess) return e;
  const int row_blocks = (ka.rows + Cfg::kBlockM - 1) / Cfg::kBlockM;
  const dim3 grid = ka.group_order ? dim3(row_blocks * ka.group, ka.hkv, 1) : dim3(row_blocks, ka.hq, 1);
  attention_wgmma_kernel<Cfg><<<grid, Cfg::kThreads, Cfg::kSmemBytes, stream>>>(ka, tq, tk, tv);
  return cudaGetLastError();
}

template <int D>
cudaError_t launch_d(const KernelArgs& ka, bool pingpong, bool overlap, cudaStream_t stream) {
  if (pingpong) return overlap ? launch<D, true, true>(ka, stream) : launch<D, true, false>(ka, stream);
  return overlap ? launch<D, false, true>(ka, stream) : launch<D, false, false>(ka, stream);
}

}  // namespace

bool attention_wgmma_supports(const KernelArgs& ka) {
  return !ka.pack_heads && !ka.partial && tma_addressable(ka.q) && tma_addressable(ka.k) && tma_addressable(ka.v);
}

cudaError_t attention_wgmma(const KernelArgs& ka, int d, bool pingpong, bool overlap, cudaStream_t stream) {
  if (!attention_wgmma_supports(ka)) return cudaErrorInvalidValue;
  switch (d) {
    case 64:
      return launch_d<64>(ka, pingpong, overlap, stream);
    case 128:
      return launch_d<128>(ka, pingpong, overlap, stream);
    default:
      return cudaErrorNotSupported;
  }
}

}  // namespace starmesh::kernels
