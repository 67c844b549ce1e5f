// Attention for at most 16 query rows (a decode step: one query, the q heads of a kv head
// packed into the rows), split over the keys. The mma.sync kernel gives such a tile to one
// warp while three only load, and its math then bounds short key ranges (1.2 TB/s over 8K
// keys, bench/NOTES.md D6). Here all four warps compute: each takes its own 16 keys of every
// 64-key tile (S = 16 x 16, O += P V over those 16 keys), keeps its own running max, sum and
// output, and the four states merge through shared memory at the end. K/V tiles stream
// through a cp.async ring of kStages.
#include <cuda_bf16.h>

#include "attention_common.cuh"
#include "attention_decode.cuh"
#include "attention_tile.cuh"

namespace starmesh::kernels {
namespace {

using namespace tile;

template <int D_, int Stages_>
struct DecodeConfig {
  static constexpr int D = D_;
  static constexpr int kWarps = 4;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kRows = 16;    // one m16 tile, shared by every warp
  static constexpr int kBlockN = 64;  // keys per tile, 16 per warp
  static constexpr int kWarpKeys = kBlockN / kWarps;
  static constexpr int kStages = Stages_;
  static constexpr int kTileElems = kBlockN * D;
  static constexpr size_t kRingBytes = size_t(kStages) * 2 * kTileElems * sizeof(__nv_bfloat16);
  // The end-of-CTA merge reuses the ring: warps 1-3 park (m, l, O) there, per lane.
  static constexpr size_t kParkBytes = size_t(kWarps - 1) * 32 * (D / 8 * 4 + 4) * sizeof(float);
  static_assert(kParkBytes <= kRingBytes, "the merge must fit in the K/V ring");
  static constexpr size_t kSmemBytes = size_t(kRows * D) * sizeof(__nv_bfloat16) + kRingBytes;
};

// Where a CTA's keys are: each binds them (and, in a batch, the CTA's q and partial rows) in
// the CTA's copy of the arguments, and returns the split within its key range.
struct OneRange {
  template <int D>
  __device__ int bind(KernelArgs&, int split) const {
    return split;
  }
};
__device__ __forceinline__ int bind_segment(KernelArgs& a, const __nv_bfloat16* const* k, const __nv_bfloat16* const* v,
                                            const int* nk, const int* first_split, int count, int split) {
  if (split >= first_split[count]) {  // past the item's own splits (a batch): an empty state
    a.nk = 0;
    return 0;
  }
  int seg = 0;  // a handful of segments: a linear scan
  while (seg + 1 < count && split >= first_split[seg + 1]) ++seg;
  a.k = k[seg];
  a.v = v[seg];
  a.nk = nk[seg];
  return split - first_split[seg];
}
struct SegmentKeys {
  KeySegmentTable table;
  template <int D>
  __device__ int bind(KernelArgs& a, int split) const {
    return bind_segment(a, table.k, table.v, table.nk, table.first_split, table.count, split);
  }
};
struct BatchKeys {
  KeyBatchTable table;
  template <int D>
  __device__ int bind(KernelArgs& a, int split) const {
    const KeyBatchItem& it = table.item[blockIdx.x];
    const size_t item = size_t(table.first_item) + blockIdx.x;  // one query row each
    a.q += item * a.hq * D;
    a.o = static_cast<float*>(a.o) + item * a.hq * D;
    a.lse += item * a.hq;
    a.keys_per_split = it.keys_per_split;
    return bind_segment(a, it.k, it.v, it.nk, it.first_split, it.count, split);
  }
};

template <class Cfg, class Keys>
__global__ void __launch_bounds__(Cfg::kThreads)
    attention_decode_kernel(KernelArgs a, const __grid_constant__ Keys keys) {
  constexpr int D = Cfg::D, BN = Cfg::kBlockN, WK = Cfg::kWarpKeys, DC = D / 8, NB_O = D / 8;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  __nv_bfloat16* sq = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  __nv_bfloat16* skv = sq + Cfg::kRows * D;  // stage s: K at s * 2 * tile, V right after

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int slot = blockIdx.y;  // q head (or kv head when packing)
  const int kvh = a.pack_heads ? slot : slot / a.group;
  const int split = blockIdx.z;  // the partial it writes
  const int local_split = keys.template bind<D>(a, split);
  const KeyWindow win = key_window(a, slot, 0, Cfg::kRows, local_split);
  const int n_tiles = win.tiles(BN);

  for (int c = tid; c < Cfg::kRows * DC; c += Cfg::kThreads) {  // Q (rows past the end: zero)
    const int r = c / DC, ch = c % DC;
    int qi, h;
    row_to_query(a, slot, r, qi, h);
    const bool ok = r < a.rows;
    const __nv_bfloat16* src = a.q + (ok ? (size_t(qi) * a.hq + h) * D + ch * 8 : 0);
    cp_async_16(smem_addr(sq + swizzled_offset<D>(r, ch * 8)), src, ok ? 16 : 0);
  }
  auto load_kv = [&](int t, int stage) {
    __nv_bfloat16* sk = skv + stage * 2 * Cfg::kTileElems;
    __nv_bfloat16* sv = sk + Cfg::kTileElems;
    const int base = win.k_begin + t * BN;
#pragma unroll
    for (int c = tid; c < BN * DC; c += Cfg::kThreads) {
      const int r = c / DC, ch = c % DC;
      const int key = base + r;
      const bool ok = key < win.k_limit;
      const size_t off = ok ? (size_t(key) * a.hkv + kvh) * D + ch * 8 : 0;
      const uint32_t dst = swizzled_offset<D>(r, ch * 8);
      cp_async_16(smem_addr(sk + dst), a.k + off, ok ? 16 : 0);
      cp_async_16(smem_addr(sv + dst), a.v + off, ok ? 16 : 0);
    }
  };
#pragma unroll
  for (int t = 0; t < Cfg::kStages - 1; ++t) {  // the first group also carries Q
    if (t < n_tiles) load_kv(t, t);
    cp_async_commit();
  }

  float acc[NB_O][4];
#pragma unroll
  for (int j = 0; j < NB_O; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};
  uint32_t qf[D / 16][4];
  const int g = lane / 4, t4 = lane % 4;
  int row_qi[2];
  {
    int h;
    row_to_query(a, slot, g, row_qi[0], h);
    row_to_query(a, slot, g + 8, row_qi[1], h);
  }

  for (int t = 0; t < n_tiles; ++t) {
    const int ahead = t + Cfg::kStages - 1;
    if (ahead < n_tiles) load_kv(ahead, ahead % Cfg::kStages);
    cp_async_commit();
    cp_async_wait<Cfg::kStages - 1>();
    __syncthreads();
    if (t == 0) {
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        const int r = (lane % 8) + 8 * ((lane / 8) % 2);
        const int col = kk * 16 + 8 * (lane / 16);
        ldmatrix_x4(smem_addr(sq + swizzled_offset<D>(r, col)), qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3]);
      }
    }
    const __nv_bfloat16* sk = skv + (t % Cfg::kStages) * 2 * Cfg::kTileElems;
    const __nv_bfloat16* sv = sk + Cfg::kTileElems;
    const int k0 = warp * WK;  // this warp's keys within the tile

    float s[WK / 8][4];  // S = Q K^T: 16 rows x this warp's 16 keys
#pragma unroll
    for (int j = 0; j < WK / 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      const int key = k0 + (lane % 8) + 8 * (lane / 16);
      const int col = kk * 16 + 8 * ((lane / 8) % 2);
      uint32_t b0, b1, b2, b3;
      ldmatrix_x4(smem_addr(sk + swizzled_offset<D>(key, col)), b0, b1, b2, b3);
      mma_bf16(s[0], qf[kk], b0, b1);
      mma_bf16(s[1], qf[kk], b2, b3);
    }
    mask_scores(a, s, win.k_begin + t * BN + k0, win.k_end, win.qi_first, row_qi, t4);
    online_softmax(s, acc, m_run, l_run, a.scale_log2);

    // O += P V over the warp's 16 keys: P from the S accumulators, V via ldmatrix.trans.
    const uint32_t p[4] = {pack_bf16(s[0][0], s[0][1]), pack_bf16(s[0][2], s[0][3]), pack_bf16(s[1][0], s[1][1]),
                           pack_bf16(s[1][2], s[1][3])};
    accumulate_pv<D>(acc, p, sv, k0, lane);
    __syncthreads();  // this stage is refilled kStages - 1 iterations on
  }
  cp_async_wait<0>();
  __syncthreads();

  // Merge the four warps' states into warp 0: each lane holds the same fragment positions
  // in every warp, so lane i of warp 0 reads what lane i of the others parked.
  float* park = reinterpret_cast<float*>(skv);
  constexpr int kPerLane = NB_O * 4 + 4;
  if (warp > 0) {
    float* mine = park + (size_t(warp - 1) * 32 + lane) * kPerLane;
#pragma unroll
    for (int j = 0; j < NB_O; ++j)
      *reinterpret_cast<float4*>(mine + 4 * j) = make_float4(acc[j][0], acc[j][1], acc[j][2], acc[j][3]);
    *reinterpret_cast<float4*>(mine + 4 * NB_O) = make_float4(m_run[0], m_run[1], l_run[0], l_run[1]);
  }
  __syncthreads();
  if (warp > 0) return;
#pragma unroll
  for (int w = 0; w < Cfg::kWarps - 1; ++w) {
    const float* other = park + (size_t(w) * 32 + lane) * kPerLane;
    const float4 ml = *reinterpret_cast<const float4*>(other + 4 * NB_O);
    const float m_other[2] = {ml.x, ml.y}, l_other[2] = {ml.z, ml.w};
    float mine_scale[2], other_scale[2];
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      const float m = fmaxf(m_run[hr], m_other[hr]);
      const float m_use = m == -INFINITY ? 0.0f : m;  // both empty: both scales 0
      mine_scale[hr] = fast_exp2(m_run[hr] - m_use);
      other_scale[hr] = fast_exp2(m_other[hr] - m_use);
      m_run[hr] = m;
      l_run[hr] = l_run[hr] * mine_scale[hr] + l_other[hr] * other_scale[hr];
    }
#pragma unroll
    for (int j = 0; j < NB_O; ++j) {
      const float4 o = *reinterpret_cast<const float4*>(other + 4 * j);
      acc[j][0] = acc[j][0] * mine_scale[0] + o.x * other_scale[0];
      acc[j][1] = acc[j][1] * mine_scale[0] + o.y * other_scale[0];
      acc[j][2] = acc[j][2] * mine_scale[1] + o.z * other_scale[1];
      acc[j][3] = acc[j][3] * mine_scale[1] + o.w * other_scale[1];
    }
  }
  store_rows(a, slot, g, t4, split, acc, m_run, l_run);
}

template <int D, int Stages, class Keys>
cudaError_t launch(const KernelArgs& ka, const Keys& keys, dim3 grid, cudaStream_t stream) {
  using Cfg = DecodeConfig<D, Stages>;
  const auto kernel = attention_decode_kernel<Cfg, Keys>;
  const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(Cfg::kSmemBytes));
  if (e != cudaSuccess) return e;
  kernel<<<grid, Cfg::kThreads, Cfg::kSmemBytes, stream>>>(ka, keys);
  return cudaGetLastError();
}

template <class Keys>
cudaError_t dispatch(const KernelArgs& ka, const Keys& keys, int d, dim3 grid, int stages, cudaStream_t stream) {
  if (ka.rows > kDecodeMaxRows) return cudaErrorInvalidValue;
  switch (d * 10 + stages) {
    case 642:
      return launch<64, 2>(ka, keys, grid, stream);
    case 643:
      return launch<64, 3>(ka, keys, grid, stream);
    case 1282:
      return launch<128, 2>(ka, keys, grid, stream);
    case 1283:
      return launch<128, 3>(ka, keys, grid, stream);
    default:
      return cudaErrorNotSupported;
  }
}

}  // namespace

cudaError_t attention_decode(const KernelArgs& ka, int d, int slots, int splits, int stages, cudaStream_t stream) {
  return dispatch(ka, OneRange{}, d, dim3(1, slots, splits), stages, stream);
}

cudaError_t attention_decode_segments(const KernelArgs& ka, const KeySegmentTable& table, int d, int slots, int stages,
                                      cudaStream_t stream) {
  if (table.count < 1 || table.count > kMaxKeySegments) return cudaErrorInvalidValue;
  return dispatch(ka, SegmentKeys{table}, d, dim3(1, slots, table.first_split[table.count]), stages, stream);
}

cudaError_t attention_decode_batch(const KernelArgs& ka, const KeyBatchTable& table, int items, int d, int slots,
                                   int splits, int stages, cudaStream_t stream) {
  if (items < 1 || items > kBatchTableItems || splits < 1 || !ka.partial) return cudaErrorInvalidValue;
  for (int i = 0; i < items; ++i)
    if (table.item[i].count < 1 || table.item[i].count > kMaxKeySegments) return cudaErrorInvalidValue;
  return dispatch(ka, BatchKeys{table}, d, dim3(items, slots, splits), stages, stream);
}

}  // namespace starmesh::kernels
