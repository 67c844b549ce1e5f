// Tiled attention with log-sum-exp on tensor cores (FlashAttention-2 scheme): each warp owns
// 16 query rows; K/V tiles stream through shared memory with cp.async; S = Q K^T and O += P V
// on mma.sync m16n8k16 (bf16 in, f32 accumulate); online softmax in the log2 domain.
// Optional split over keys writes f32 partial states that merge_attention_states combines.
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>

#include "attention_common.cuh"
#include "attention_decode.cuh"
#include "attention_tile.cuh"
#include "attention_wgmma.cuh"
#include "starmesh/kernels/attention.hpp"

namespace starmesh::kernels {
namespace {

using namespace tile;

template <int D_, bool SkipIdleWarps_>
struct AttnConfig {
  static constexpr int D = D_;
  // Few query rows: warps whose 16 rows are all past the end skip the math and only load.
  // A compile-time switch: the branch costs the full tiles ~15% (measured, bench/NOTES.md).
  static constexpr bool kSkipIdleWarps = SkipIdleWarps_;
  static constexpr int kWarps = 4;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kBlockM = kWarps * 16;  // query rows per CTA
  static constexpr int kBlockN = 64;           // keys per tile
  static constexpr int kStages = 2;            // K/V tiles in flight (3 measured no faster)
  static constexpr int kTileElems = kBlockN * D;
  static constexpr size_t kSmemBytes = size_t(kBlockM * D + kStages * 2 * kTileElems) * sizeof(__nv_bfloat16);
};

template <class Cfg>
__global__ void __launch_bounds__(Cfg::kThreads) attention_kernel(const KernelArgs a) {
  constexpr int D = Cfg::D, BM = Cfg::kBlockM, BN = Cfg::kBlockN, DC = D / 8;  // 16-byte chunks per row
  extern __shared__ __align__(128) unsigned char smem_raw[];
  __nv_bfloat16* sq = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  __nv_bfloat16* skv = sq + BM * D;  // stage s: K at s * 2 * tile, V right after

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int slot = blockIdx.y;  // q head (or kv head when packing)
  const int kvh = a.pack_heads ? slot : slot / a.group;
  const int row0 = blockIdx.x * BM;
  const int split = blockIdx.z;
  const KeyWindow win = key_window(a, slot, row0, BM, split);
  const int k_begin = win.k_begin, k_end = win.k_end, k_limit = win.k_limit, qi_first = win.qi_first;
  const int n_tiles = win.tiles(BN);

  // Q tile -> shared (rows past the end are zero).
  for (int c = tid; c < BM * DC; c += Cfg::kThreads) {
    const int r = c / DC, ch = c % DC;
    int qi, h;
    row_to_query(a, slot, row0 + r, qi, h);
    const bool ok = row0 + r < a.rows;
    const __nv_bfloat16* src = a.q + (ok ? (size_t(qi) * a.hq + h) * D + ch * 8 : 0);
    cp_async_16(smem_addr(sq + swizzled_offset<D>(r, ch * 8)), src, ok ? 16 : 0);
  }
  auto load_kv = [&](int t, int stage) {
    __nv_bfloat16* sk = skv + stage * 2 * Cfg::kTileElems;
    __nv_bfloat16* sv = sk + Cfg::kTileElems;
    const int base = k_begin + t * BN;
    for (int c = tid; c < BN * DC; c += Cfg::kThreads) {
      const int r = c / DC, ch = c % DC;
      const int key = base + r;
      const bool ok = key < k_limit;
      const size_t off = ok ? (size_t(key) * a.hkv + kvh) * D + ch * 8 : 0;
      const uint32_t dst = swizzled_offset<D>(r, ch * 8);
      cp_async_16(smem_addr(sk + dst), a.k + off, ok ? 16 : 0);
      cp_async_16(smem_addr(sv + dst), a.v + off, ok ? 16 : 0);
    }
  };
  // Prologue: Q and the first kStages - 1 tiles in flight, one commit group each.
#pragma unroll
  for (int t = 0; t < Cfg::kStages - 1; ++t) {
    if (t < n_tiles) load_kv(t, t);
    cp_async_commit();
  }

  float acc[D / 8][4];  // O: 16 rows x D per warp
#pragma unroll
  for (int j = 0; j < D / 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
  float m_run[2] = {-INFINITY, -INFINITY};  // rows g and g + 8, log2 domain
  float l_run[2] = {0.0f, 0.0f};
  uint32_t qf[D / 16][4];

  const int g = lane / 4, t4 = lane % 4;
  // This thread's two rows and their query indices (for the causal mask).
  int row_qi[2];
  {
    int h;
    row_to_query(a, slot, row0 + warp * 16 + g, row_qi[0], h);
    row_to_query(a, slot, row0 + warp * 16 + g + 8, row_qi[1], h);
  }

  const bool warp_active = !Cfg::kSkipIdleWarps || row0 + warp * 16 < a.rows;
  for (int t = 0; t < n_tiles; ++t) {
    const int ahead = t + Cfg::kStages - 1;
    if (ahead < n_tiles) load_kv(ahead, ahead % Cfg::kStages);
    cp_async_commit();  // possibly empty: keeps one group per tile for the wait below
    cp_async_wait<Cfg::kStages - 1>();
    __syncthreads();
    if (Cfg::kSkipIdleWarps && !warp_active) {
      __syncthreads();
      continue;
    }
    if (t == 0) {
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        const int r = warp * 16 + (lane % 8) + 8 * ((lane / 8) % 2);
        const int col = kk * 16 + 8 * (lane / 16);
        ldmatrix_x4(smem_addr(sq + swizzled_offset<D>(r, col)), qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3]);
      }
    }
    const __nv_bfloat16* sk = skv + (t % Cfg::kStages) * 2 * Cfg::kTileElems;
    const __nv_bfloat16* sv = sk + Cfg::kTileElems;

    // S = Q K^T for 16 rows x BN keys.
    float s[BN / 8][4];
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
      for (int j = 0; j < BN / 8; j += 2) {
        const int key = 8 * j + (lane % 8) + 8 * (lane / 16);
        const int col = kk * 16 + 8 * ((lane / 8) % 2);
        uint32_t b0, b1, b2, b3;
        ldmatrix_x4(smem_addr(sk + swizzled_offset<D>(key, col)), b0, b1, b2, b3);
        mma_bf16(s[j], qf[kk], b0, b1);
        mma_bf16(s[j + 1], qf[kk], b2, b3);
      }
    }

    // Mask where the tile crosses the end or the diagonal; fold the tile into the softmax.
    const int base = k_begin + t * BN;
    mask_scores(a, s, base, k_end, qi_first, row_qi, t4);
    online_softmax(s, acc, m_run, l_run, a.scale_log2);

    // O += P V: P from the S accumulators (their layout is the A operand's), V via ldmatrix.trans.
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
      const uint32_t p[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                             pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                             pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
      accumulate_pv<D>(acc, p, sv, kk * 16, lane);
    }
    __syncthreads();  // this stage is refilled kStages - 1 iterations on
  }
  cp_async_wait<0>();

  store_rows(a, slot, row0 + warp * 16 + g, t4, split, acc, m_run, l_run);
}

template <int D, bool SkipIdle>
cudaError_t launch(const KernelArgs& ka, dim3 grid, cudaStream_t stream) {
  using Cfg = AttnConfig<D, SkipIdle>;
  // Above 48 KB of dynamic shared memory needs the opt-in (cheap; done every launch).
  const cudaError_t e =
      cudaFuncSetAttribute(attention_kernel<Cfg>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(Cfg::kSmemBytes));
  if (e != cudaSuccess) return e;
  attention_kernel<Cfg><<<grid, Cfg::kThreads, Cfg::kSmemBytes, stream>>>(ka);
  return cudaGetLastError();
}

constexpr int kRowsPerCta = 64;  // AttnConfig<D>::kBlockM for every supported D

}  // namespace

AttentionPlan plan_attention(const AttentionArgs& a, int num_sms, bool hopper) {
  AttentionPlan p;
  const int group = a.hkv > 0 ? a.hq / a.hkv : 1;
  // Few queries: one tile holds every q head of a kv head, so K/V are read once per group.
  p.pack_heads = int64_t(a.nq) * group <= kRowsPerCta;
  const int rows = p.pack_heads ? a.nq * group : a.nq;
  const int slots = p.pack_heads ? a.hkv : a.hq;
  const int64_t ctas = int64_t((rows + kRowsPerCta - 1) / kRowsPerCta) * slots;
  // Split the keys until `per_sm` CTAs per multiprocessor are busy (at least `min_keys` keys a
  // split, splits aligned to `align` keys).
  auto split_keys = [&](int per_sm, int align, int64_t min_keys = 256) {
    const int64_t target = int64_t(per_sm) * std::max(num_sms, 1);
    int splits = 1;
    if (ctas < target) {
      const int64_t max_splits = std::max<int64_t>(1, (a.nk + min_keys - 1) / min_keys);
      // One CTA per SM: whole waves only (a 17th split of 8 heads would run as a second wave).
      const int64_t fill = per_sm == 1 ? std::max<int64_t>(1, target / ctas) : (target + ctas - 1) / ctas;
      splits = int(std::min<int64_t>(fill, max_splits));
    }
    const int per = (a.nk + splits - 1) / std::max(splits, 1);
    p.keys_per_split = std::max(align, (per + align - 1) / align * align);
    p.splits = a.nk == 0 ? 1 : std::max(1, (a.nk + p.keys_per_split - 1) / p.keys_per_split);
  };
  split_keys(2, 64);  // the mma.sync kernel: two CTAs per SM fit in shared memory
  p.skip_idle_warps = rows < kRowsPerCta;
  // Many query rows of one head: the warp-specialised wgmma kernel (Hopper only), whole key
  // range per CTA.
  p.use_wgmma = hopper && !p.pack_heads && p.splits == 1;
  p.wgmma_pingpong = p.wgmma_overlap = p.wgmma_group_order = p.wgmma_lazy_rescale = p.use_wgmma;
  // Otherwise, on Hopper, the split-KV wgmma kernel for more than 16 rows whose 64-row tiles
  // hold whole groups: one CTA per SM, splits aligned to its 128-key tiles. Up to 16 rows the
  // mma.sync kernel has one active warp that reads K/V once, and measured faster (NOTES.md).
  if (!p.use_wgmma && hopper && rows > 16 && (!p.pack_heads || (group <= 64 && 64 % group == 0))) {
    p.use_wgmma_partial = true;
    split_keys(1, 128);
  }
  // A decode step (at most 16 rows): the kernel whose four warps all compute, two CTAs per SM.
  if (rows <= kDecodeMaxRows && (a.d == 64 || a.d == 128)) {
    p.use_decode = true;
    p.use_wgmma = p.use_wgmma_partial = false;
    p.wgmma_pingpong = p.wgmma_overlap = p.wgmma_group_order = p.wgmma_lazy_rescale = false;
    split_keys(2, 64);
  }
  p.workspace_bytes = p.splits > 1 ? size_t(p.splits) * a.nq * a.hq * (size_t(a.d) + 1) * sizeof(float) : 0;
  return p;
}

cudaError_t attention_forward(const AttentionArgs& a, const AttentionPlan& plan, void* workspace, cudaStream_t stream) {
  if (a.hkv <= 0 || a.hq % a.hkv || a.nq < 0 || a.nk < 0) return cudaErrorInvalidValue;
  if (a.nq == 0) return cudaSuccess;
  if (plan.splits > 1 && (!workspace || plan.workspace_bytes == 0)) return cudaErrorInvalidValue;
  KernelArgs ka{};
  ka.q = static_cast<const __nv_bfloat16*>(a.q);
  ka.k = static_cast<const __nv_bfloat16*>(a.k);
  ka.v = static_cast<const __nv_bfloat16*>(a.v);
  ka.nq = a.nq;
  ka.nk = a.nk;
  ka.hq = a.hq;
  ka.hkv = a.hkv;
  ka.group = a.hq / a.hkv;
  ka.pack_heads = plan.pack_heads;
  ka.rows = plan.pack_heads ? a.nq * ka.group : a.nq;
  ka.causal = a.causal;
  ka.diagonal = a.diagonal;
  ka.scale_log2 = a.scale * 1.4426950408889634f;
  ka.keys_per_split = plan.keys_per_split;
  ka.partial = plan.splits > 1;
  ka.group_order = plan.wgmma_group_order;
  ka.lazy_rescale = plan.wgmma_lazy_rescale;
  float* o_parts = static_cast<float*>(workspace);
  float* lse_parts = o_parts ? o_parts + size_t(plan.splits) * a.nq * a.hq * a.d : nullptr;
  ka.o = ka.partial ? static_cast<void*>(o_parts) : a.o;
  ka.lse = ka.partial ? lse_parts : a.lse;
  const dim3 grid((ka.rows + kRowsPerCta - 1) / kRowsPerCta, plan.pack_heads ? a.hkv : a.hq, plan.splits);
  cudaError_t e;
  if (plan.use_wgmma) {
    if (ka.pack_heads || ka.partial) return cudaErrorInvalidValue;
    // Tensors the copy engine cannot address (unaligned views) take the mma.sync kernel.
    if (attention_wgmma_supports(ka)) return attention_wgmma(ka, a.d, plan.wgmma_pingpong, plan.wgmma_overlap, stream);
  }
  if (plan.use_decode) {
    e = attention_decode(ka, a.d, plan.pack_heads ? a.hkv : a.hq, plan.splits, plan.decode_stages, stream);
  } else if (plan.use_wgmma_partial && attention_wgmma_partial_supports(ka)) {
    e = attention_wgmma_partial(ka, a.d, plan.splits, stream);
  } else {
    const bool skip = plan.skip_idle_warps;
    switch (a.d) {  // compile-time head dims; anything else is refused
      case 64:
        e = skip ? launch<64, true>(ka, grid, stream) : launch<64, false>(ka, grid, stream);
        break;
      case 128:
        e = skip ? launch<128, true>(ka, grid, stream) : launch<128, false>(ka, grid, stream);
        break;
      default:
        return cudaErrorNotSupported;
    }
  }
  if (e != cudaSuccess || !ka.partial) return e;
  return merge_attention_states(o_parts, lse_parts, plan.splits, a.nq, a.hq, a.d, a.o, false, a.lse, stream);
}

}  // namespace starmesh::kernels
