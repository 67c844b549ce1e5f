// RMSNorm, RoPE, SwiGLU, residual add and embedding gather on bf16, f32 inside.
#include <cuda_bf16.h>

#include <cstdint>

#include "starmesh/kernels/elementwise.hpp"

namespace starmesh::kernels {
namespace {

constexpr int kNormThreads = 256;
constexpr int kElementThreads = 256;

// The sum of v over the CTA (every thread gets it): shuffles within warps, then the warps'
// sums through shared memory.
__device__ float block_sum(float v, float* warp_sums) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    v = threadIdx.x < blockDim.x / 32 ? warp_sums[threadIdx.x] : 0.0f;
    for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (threadIdx.x == 0) warp_sums[0] = v;
  }
  __syncthreads();
  return warp_sums[0];
}

__global__ void rms_norm_kernel(const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ w,
                                __nv_bfloat16* __restrict__ out, int d, float eps) {
  const __nv_bfloat16* row = x + size_t(blockIdx.x) * d;
  float ss = 0.0f;
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    const float v = __bfloat162float(row[c]);
    ss += v * v;
  }
  __shared__ float warp_sums[kNormThreads / 32];
  const float r = rsqrtf(block_sum(ss, warp_sums) / float(d) + eps);
  for (int c = threadIdx.x; c < d; c += blockDim.x)
    out[size_t(blockIdx.x) * d + c] = __float2bfloat16(__bfloat162float(row[c]) * r * __bfloat162float(w[c]));
}

// The same for rows of d % 8 == 0, d <= 8 * kNormThreads * kNormVectors: each thread loads
// its 16-byte vectors once, all in flight together, and keeps them in registers for the
// second pass (the plain kernel's strided loop waits on one load after another: 13 us for a
// 4096-wide row on the H200, against a few us here).
constexpr int kNormVectors = 4;

// With `delta` (the fused residual add): x += delta first, rounded to bf16 and written back
// as the separate add would, and the norm taken of that.
__global__ void rms_norm_vec_kernel(uint4* x, const uint4* __restrict__ delta, const uint4* __restrict__ w,
                                    uint4* __restrict__ out, int vecs, float d, float eps) {
  uint4* row = x + size_t(blockIdx.x) * vecs;
  uint4 held[kNormVectors];
  float ss = 0.0f;
#pragma unroll
  for (int i = 0; i < kNormVectors; ++i) {
    const int c = threadIdx.x + i * kNormThreads;
    if (c < vecs) held[i] = row[c];
  }
  if (delta) {
#pragma unroll
    for (int i = 0; i < kNormVectors; ++i) {
      const int c = threadIdx.x + i * kNormThreads;
      if (c >= vecs) break;
      const uint4 dv = delta[size_t(blockIdx.x) * vecs + c];
      __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&held[i]);
      const __nv_bfloat162* e = reinterpret_cast<const __nv_bfloat162*>(&dv);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float2 a = __bfloat1622float2(h[j]), b = __bfloat1622float2(e[j]);
        h[j] = __floats2bfloat162_rn(a.x + b.x, a.y + b.y);
      }
      row[c] = held[i];
    }
  }
#pragma unroll
  for (int i = 0; i < kNormVectors; ++i) {
    const int c = threadIdx.x + i * kNormThreads;
    if (c >= vecs) break;
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&held[i]);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float2 f = __bfloat1622float2(h[j]);
      ss += f.x * f.x + f.y * f.y;
    }
  }
  __shared__ float warp_sums[kNormThreads / 32];
  const float r = rsqrtf(block_sum(ss, warp_sums) / d + eps);
#pragma unroll
  for (int i = 0; i < kNormVectors; ++i) {
    const int c = threadIdx.x + i * kNormThreads;
    if (c >= vecs) break;
    const uint4 wv = w[c];
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&held[i]);
    const __nv_bfloat162* g = reinterpret_cast<const __nv_bfloat162*>(&wv);
    uint4 o;
    __nv_bfloat162* op = reinterpret_cast<__nv_bfloat162*>(&o);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float2 f = __bfloat1622float2(h[j]), gw = __bfloat1622float2(g[j]);
      op[j] = __floats2bfloat162_rn(f.x * r * gw.x, f.y * r * gw.y);
    }
    out[size_t(blockIdx.x) * vecs + c] = o;
  }
}

// One thread per (token, head, frequency): rotates the pair (f, f + d/2).
__global__ void rope_kernel(__nv_bfloat16* x, const int32_t* __restrict__ pos, const float* __restrict__ inv_freq,
                            int n, int heads, int half) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(n) * heads * half) return;
  const int f = int(i % half);
  const int64_t row = i / half;  // token * heads + head
  const int token = int(row / heads);
  const float angle = float(pos[token]) * inv_freq[f];  // float32 product, as HF
  float s, c;
  sincosf(angle, &s, &c);
  __nv_bfloat16* p = x + row * 2 * half;
  const float a = __bfloat162float(p[f]), b = __bfloat162float(p[f + half]);
  p[f] = __float2bfloat16(a * c - b * s);
  p[f + half] = __float2bfloat16(b * c + a * s);
}

// rope_kernel over q's heads then k's; a k pair is also written to k_dst, and the same pair of
// v copied to v_dst, so that the KV cache's new rows need no copies of their own.
__global__ void rope_store_kv_kernel(__nv_bfloat16* q, __nv_bfloat16* k, const __nv_bfloat16* __restrict__ v,
                                     __nv_bfloat16* __restrict__ k_dst, __nv_bfloat16* __restrict__ v_dst,
                                     const int32_t* __restrict__ pos, const float* __restrict__ inv_freq, int n, int hq,
                                     int hkv, int half) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int heads = hq + hkv;
  if (i >= int64_t(n) * heads * half) return;
  const int f = int(i % half);
  const int64_t row = i / half;  // token * (hq + hkv) + head
  const int token = int(row / heads), head = int(row % heads);
  const float angle = float(pos[token]) * inv_freq[f];
  float s, c;
  sincosf(angle, &s, &c);
  const bool is_k = head >= hq;
  const int64_t off = is_k ? (int64_t(token) * hkv + (head - hq)) * 2 * half : (int64_t(token) * hq + head) * 2 * half;
  __nv_bfloat16* p = (is_k ? k : q) + off;
  const float a = __bfloat162float(p[f]), b = __bfloat162float(p[f + half]);
  const __nv_bfloat16 ra = __float2bfloat16(a * c - b * s), rb = __float2bfloat16(b * c + a * s);
  p[f] = ra;
  p[f + half] = rb;
  if (is_k) {
    k_dst[off + f] = ra;
    k_dst[off + f + half] = rb;
    v_dst[off + f] = v[off + f];
    v_dst[off + f + half] = v[off + f + half];
  }
}

__global__ void swiglu_kernel(const __nv_bfloat16* __restrict__ g, const __nv_bfloat16* __restrict__ u,
                              __nv_bfloat16* out, int64_t count) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  const float gv = __bfloat162float(g[i]);
  out[i] = __float2bfloat16(gv / (1.0f + expf(-gv)) * __bfloat162float(u[i]));
}

__global__ void add_kernel(const __nv_bfloat16* a, const __nv_bfloat16* b, __nv_bfloat16* out, int64_t count) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  out[i] = __float2bfloat16(__bfloat162float(a[i]) + __bfloat162float(b[i]));
}

__global__ void embedding_kernel(const int32_t* __restrict__ ids, const __nv_bfloat16* __restrict__ table,
                                 __nv_bfloat16* __restrict__ out, int d) {
  const __nv_bfloat16* src = table + size_t(ids[blockIdx.x]) * d;
  for (int c = threadIdx.x; c < d; c += blockDim.x) out[size_t(blockIdx.x) * d + c] = src[c];
}

unsigned blocks_for(int64_t count) { return unsigned((count + kElementThreads - 1) / kElementThreads); }

}  // namespace

cudaError_t rms_norm_bf16(const void* x, const void* w, void* out, int n, int d, float eps, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const bool aligned =
      (reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(w) | reinterpret_cast<uintptr_t>(out)) % 16 == 0;
  if (aligned && d % 8 == 0 && d <= 8 * kNormThreads * kNormVectors) {
    rms_norm_vec_kernel<<<n, kNormThreads, 0, stream>>>(static_cast<uint4*>(const_cast<void*>(x)), nullptr,
                                                        static_cast<const uint4*>(w), static_cast<uint4*>(out), d / 8,
                                                        float(d), eps);
    return cudaGetLastError();
  }
  rms_norm_kernel<<<n, kNormThreads, 0, stream>>>(static_cast<const __nv_bfloat16*>(x),
                                                  static_cast<const __nv_bfloat16*>(w),
                                                  static_cast<__nv_bfloat16*>(out), d, eps);
  return cudaGetLastError();
}

bool add_rms_norm_supported(const void* x, const void* delta, const void* w, const void* out, int d) {
  const uintptr_t bits = reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(delta) |
                         reinterpret_cast<uintptr_t>(w) | reinterpret_cast<uintptr_t>(out);
  return bits % 16 == 0 && d % 8 == 0 && d <= 8 * kNormThreads * kNormVectors;
}

cudaError_t add_rms_norm_bf16(void* x, const void* delta, const void* w, void* out, int n, int d, float eps,
                              cudaStream_t stream) {
  if (!add_rms_norm_supported(x, delta, w, out, d)) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  rms_norm_vec_kernel<<<n, kNormThreads, 0, stream>>>(static_cast<uint4*>(x), static_cast<const uint4*>(delta),
                                                      static_cast<const uint4*>(w), static_cast<uint4*>(out), d / 8,
                                                      float(d), eps);
  return cudaGetLastError();
}

cudaError_t rope_bf16(void* x, const int32_t* positions, const float* inv_freq, int n, int heads, int d,
                      cudaStream_t stream) {
  const int64_t count = int64_t(n) * heads * (d / 2);
  if (count == 0) return cudaSuccess;
  rope_kernel<<<blocks_for(count), kElementThreads, 0, stream>>>(static_cast<__nv_bfloat16*>(x), positions, inv_freq, n,
                                                                 heads, d / 2);
  return cudaGetLastError();
}

cudaError_t rope_store_kv_bf16(void* q, void* k, const void* v, void* k_dst, void* v_dst, const int32_t* positions,
                               const float* inv_freq, int n, int hq, int hkv, int d, cudaStream_t stream) {
  const int64_t count = int64_t(n) * (hq + hkv) * (d / 2);
  if (count == 0) return cudaSuccess;
  rope_store_kv_kernel<<<blocks_for(count), kElementThreads, 0, stream>>>(
      static_cast<__nv_bfloat16*>(q), static_cast<__nv_bfloat16*>(k), static_cast<const __nv_bfloat16*>(v),
      static_cast<__nv_bfloat16*>(k_dst), static_cast<__nv_bfloat16*>(v_dst), positions, inv_freq, n, hq, hkv, d / 2);
  return cudaGetLastError();
}

cudaError_t swiglu_bf16(const void* gate, const void* up, void* out, int64_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  swiglu_kernel<<<blocks_for(count), kElementThreads, 0, stream>>>(static_cast<const __nv_bfloat16*>(gate),
                                                                   static_cast<const __nv_bfloat16*>(up),
                                                                   static_cast<__nv_bfloat16*>(out), count);
  return cudaGetLastError();
}

cudaError_t add_bf16(const void* a, const void* b, void* out, int64_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  add_kernel<<<blocks_for(count), kElementThreads, 0, stream>>>(static_cast<const __nv_bfloat16*>(a),
                                                                static_cast<const __nv_bfloat16*>(b),
                                                                static_cast<__nv_bfloat16*>(out), count);
  return cudaGetLastError();
}

cudaError_t embedding_bf16(const int32_t* ids, const void* table, void* out, int n, int d, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  embedding_kernel<<<n, 128, 0, stream>>>(ids, static_cast<const __nv_bfloat16*>(table),
                                          static_cast<__nv_bfloat16*>(out), d);
  return cudaGetLastError();
}

namespace {
struct RowDestinations {
  void* dst[kScatterRowsPerLaunch];
};
// One CTA a row; 16-byte words where src, dst and the row size allow, else bytes.
__global__ void scatter_rows_kernel(const unsigned char* src, const __grid_constant__ RowDestinations to,
                                    size_t row_bytes) {
  const unsigned char* from = src + size_t(blockIdx.x) * row_bytes;
  unsigned char* dst = static_cast<unsigned char*>(to.dst[blockIdx.x]);
  if ((reinterpret_cast<uintptr_t>(from) | reinterpret_cast<uintptr_t>(dst) | row_bytes) % 16 == 0) {
    for (size_t i = threadIdx.x; i < row_bytes / 16; i += blockDim.x)
      reinterpret_cast<uint4*>(dst)[i] = reinterpret_cast<const uint4*>(from)[i];
  } else {
    for (size_t i = threadIdx.x; i < row_bytes; i += blockDim.x) dst[i] = from[i];
  }
}
}  // namespace

cudaError_t scatter_rows(const void* src, void* const* dst, int rows, size_t row_bytes, cudaStream_t stream) {
  if (rows < 0 || (rows > 0 && (!src || !dst))) return cudaErrorInvalidValue;
  for (int first = 0; first < rows; first += kScatterRowsPerLaunch) {
    const int count = rows - first < kScatterRowsPerLaunch ? rows - first : kScatterRowsPerLaunch;
    RowDestinations to{};
    for (int i = 0; i < count; ++i) {
      if (!dst[first + i]) return cudaErrorInvalidValue;
      to.dst[i] = dst[first + i];
    }
    scatter_rows_kernel<<<count, 128, 0, stream>>>(static_cast<const unsigned char*>(src) + size_t(first) * row_bytes,
                                                   to, row_bytes);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

}  // namespace starmesh::kernels
