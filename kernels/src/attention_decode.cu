// Decode attention: one query row (a generated token) over a long KV, split across CTAs
// (flash-decoding). The general kernels give such a row one active warp per CTA, which keeps
// too few loads in flight: on the H200, 1.2 TB/s over 8K keys and 2.6 TB/s over 32K. Here
// every thread of a CTA streams keys: D/8 threads share a key (16 bytes each), a wave of 128
// threads covers 128 / (D/8) keys, and each thread has kUnroll waves of K and V loads in
// flight. Per tile of keys: scores into shared memory, an online-softmax update per q head,
// then P V into per-thread accumulators, reduced across the CTA at the end. Partial states
// (split > 1) go to the workspace for merge_attention_states.
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

#include "attention_decode.cuh"

namespace starmesh::kernels {
namespace {

constexpr int kThreads = 128;
constexpr int kUnroll = 8;  // waves of loads in flight per thread

template <int D, int G>
struct DecodeShape {
  static constexpr int kThreadsPerKey = D / 8;                    // 16 bytes of a row each
  static constexpr int kKeysPerWave = kThreads / kThreadsPerKey;  // keys one wave loads
  static constexpr int kTile = kKeysPerWave * kUnroll;            // keys per tile
};

__device__ inline void to_floats(const uint4& v, float (&f)[8]) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 p = __bfloat1622float2(h[j]);
    f[2 * j] = p.x;
    f[2 * j + 1] = p.y;
  }
}

template <int D, int G>
__global__ void __launch_bounds__(kThreads) decode_kernel(DecodeArgs a) {
  using S = DecodeShape<D, G>;
  constexpr int TPK = S::kThreadsPerKey, KPW = S::kKeysPerWave, T = S::kTile;
  const int kvh = blockIdx.y, split = blockIdx.x;
  const int lane_key = threadIdx.x / TPK;  // which key of a wave
  const int part = threadIdx.x % TPK;      // which 8 dims of it
  const int begin = split * a.keys_per_split;
  const int end = min(a.visible, begin + a.keys_per_split);

  __shared__ float scores[G][T];
  __shared__ float run_max[G], run_sum[G], rescale[G];
  __shared__ float reduce[KPW][G][D];

  // This thread's 8 dims of each q head of the group, scaled for exp2.
  float q[G][8];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    const uint4 v = *reinterpret_cast<const uint4*>(a.q + size_t(kvh * G + g) * D + part * 8);
    to_floats(v, q[g]);
#pragma unroll
    for (int j = 0; j < 8; ++j) q[g][j] *= a.scale_log2;
  }
  float acc[G][8] = {};
  if (threadIdx.x < G) {
    run_max[threadIdx.x] = -INFINITY;  // log2 units
    run_sum[threadIdx.x] = 0.0f;
  }
  __syncthreads();
  const size_t row_stride = size_t(a.hkv) * D;

  for (int t0 = begin; t0 < end; t0 += T) {
    uint4 kr[kUnroll], vr[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int key = t0 + u * KPW + lane_key;
      if (key < end) {
        const size_t at = size_t(key) * row_stride + size_t(kvh) * D + part * 8;
        kr[u] = *reinterpret_cast<const uint4*>(a.k + at);
        vr[u] = *reinterpret_cast<const uint4*>(a.v + at);
      } else {
        kr[u] = vr[u] = make_uint4(0, 0, 0, 0);
      }
    }
    // Scores: each key's TPK threads reduce their partial dot products.
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      float kf[8];
      to_floats(kr[u], kf);
      const int key = t0 + u * KPW + lane_key;
#pragma unroll
      for (int g = 0; g < G; ++g) {
        float s = 0.0f;
#pragma unroll
        for (int j = 0; j < 8; ++j) s += q[g][j] * kf[j];
#pragma unroll
        for (int o = TPK / 2; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (part == 0) scores[g][u * KPW + lane_key] = key < end ? s : -INFINITY;
      }
    }
    __syncthreads();
    // Online softmax per q head (warp w takes heads w, w + 4, ...); the running max and sum
    // live in shared memory.
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (int g = warp; g < G; g += kThreads / 32) {
      float tile_max = -INFINITY;
      for (int i = lane; i < T; i += 32) tile_max = fmaxf(tile_max, scores[g][i]);
#pragma unroll
      for (int o = 16; o > 0; o /= 2) tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, o));
      const float m_old = run_max[g];
      const float m_new = fmaxf(m_old, tile_max);
      float sum = 0.0f;
      for (int i = lane; i < T; i += 32) {
        const float p = m_new == -INFINITY ? 0.0f : exp2f(scores[g][i] - m_new);
        scores[g][i] = p;
        sum += p;
      }
#pragma unroll
      for (int o = 16; o > 0; o /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
      const float scale_old = m_old == -INFINITY ? 0.0f : exp2f(m_old - m_new);
      __syncwarp();
      if (lane == 0) {
        run_max[g] = m_new;
        run_sum[g] = run_sum[g] * scale_old + sum;
        rescale[g] = scale_old;
      }
    }
    __syncthreads();
    // P V: rescale, then add this thread's keys.
#pragma unroll
    for (int g = 0; g < G; ++g) {
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[g][j] *= rescale[g];
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      float vf[8];
      to_floats(vr[u], vf);
#pragma unroll
      for (int g = 0; g < G; ++g) {
        const float p = scores[g][u * KPW + lane_key];
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[g][j] += p * vf[j];
      }
    }
    __syncthreads();  // scores and the rescale factors are rewritten by the next tile
  }
  // The accumulators across the CTA's waves.
#pragma unroll
  for (int g = 0; g < G; ++g)
#pragma unroll
    for (int j = 0; j < 8; ++j) reduce[lane_key][g][part * 8 + j] = acc[g][j];
  __syncthreads();
  for (int i = threadIdx.x; i < G * D; i += kThreads) {
    const int g = i / D, c = i % D;
    float o = 0.0f;
#pragma unroll
    for (int w = 0; w < KPW; ++w) o += reduce[w][g][c];
    const float sum = run_sum[g];
    const bool empty = !(sum > 0.0f);
    o = empty ? 0.0f : o / sum;
    const int head = kvh * G + g;
    const float lse = empty ? -INFINITY : (run_max[g] + log2f(sum)) * 0.6931471805599453f;  // natural log
    if (a.o_parts) {
      a.o_parts[(size_t(split) * a.hq + head) * D + c] = o;
      if (c == 0) a.lse_parts[size_t(split) * a.hq + head] = lse;
    } else {
      a.o[size_t(head) * D + c] = __float2bfloat16(o);
      if (c == 0) a.lse[head] = lse;
    }
  }
}

template <int D>
cudaError_t launch_d(const DecodeArgs& a, int group, dim3 grid, cudaStream_t stream) {
  switch (group) {
#define SM_DECODE_GROUP(G)                                 \
  case G:                                                  \
    decode_kernel<D, G><<<grid, kThreads, 0, stream>>>(a); \
    break;
    SM_DECODE_GROUP(1)
    SM_DECODE_GROUP(2)
    SM_DECODE_GROUP(4)
    SM_DECODE_GROUP(8)
#undef SM_DECODE_GROUP
    default:
      return cudaErrorNotSupported;
  }
  return cudaGetLastError();
}

}  // namespace

bool decode_supports(int d, int group) {
  return (d == 64 || d == 128) && (group == 1 || group == 2 || group == 4 || group == 8);
}

int decode_ctas_per_sm(int d, int group) {
  // Asked of the runtime once per kernel (registers bound it: 2 to 4 CTAs per SM).
  static int cached[2][4] = {};
  const int di = d == 64 ? 0 : 1, gi = group == 1 ? 0 : group == 2 ? 1 : group == 4 ? 2 : 3;
  int& n = cached[di][gi];
  if (n == 0) {
    int blocks = 0;
    const void* fn = nullptr;
    switch (di * 4 + gi) {
      case 0:
        fn = reinterpret_cast<const void*>(decode_kernel<64, 1>);
        break;
      case 1:
        fn = reinterpret_cast<const void*>(decode_kernel<64, 2>);
        break;
      case 2:
        fn = reinterpret_cast<const void*>(decode_kernel<64, 4>);
        break;
      case 3:
        fn = reinterpret_cast<const void*>(decode_kernel<64, 8>);
        break;
      case 4:
        fn = reinterpret_cast<const void*>(decode_kernel<128, 1>);
        break;
      case 5:
        fn = reinterpret_cast<const void*>(decode_kernel<128, 2>);
        break;
      case 6:
        fn = reinterpret_cast<const void*>(decode_kernel<128, 4>);
        break;
      default:
        fn = reinterpret_cast<const void*>(decode_kernel<128, 8>);
        break;
    }
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, fn, kThreads, 0) != cudaSuccess || blocks < 1)
      blocks = 1;
    n = blocks;
  }
  return n;
}

int decode_tile_keys(int d) { return d == 64 ? DecodeShape<64, 1>::kTile : DecodeShape<128, 1>::kTile; }

cudaError_t attention_decode(const DecodeArgs& a, int d, int splits, cudaStream_t stream) {
  const int group = a.hq / a.hkv;
  if (!decode_supports(d, group) || splits < 1) return cudaErrorNotSupported;
  const dim3 grid(splits, a.hkv);
  return d == 64 ? launch_d<64>(a, group, grid, stream) : launch_d<128>(a, group, grid, stream);
}

}  // namespace starmesh::kernels
