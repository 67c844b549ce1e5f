// Merge of n partial attention states per (row, head), exact and NaN-free:
//   lse = log sum_i exp(lse_i);  o = sum_i exp(lse_i - lse) o_i.
// One kernel body over two ways of finding the parts: back to back in one f32 buffer (the
// split-KV workspace), or a list of separate states (phase 2 of Star Attention).
#include <cuda_bf16.h>

#include <cmath>

#include "starmesh/kernels/attention.hpp"

namespace starmesh::kernels {
namespace {

// Parts i = 0..n-1 stored as o [n, rh, d], lse [n, rh] (rh = rows * heads).
struct ContiguousParts {
  const float* o;
  const float* lse;
  int n, rh, d;
  __device__ int count() const { return n; }
  __device__ float lse_at(int i, int idx) const { return lse[size_t(i) * rh + idx]; }
  __device__ float o_at(int i, int idx, int c) const { return o[(size_t(i) * rh + idx) * d + c]; }
};

// Parts given one by one, each o in bf16 or f32.
struct ListedParts {
  MergePartList list;
  int d;
  __device__ int count() const { return list.n; }
  __device__ float lse_at(int i, int idx) const { return list.part[i].lse[idx]; }
  __device__ float o_at(int i, int idx, int c) const {
    const MergePart& p = list.part[i];
    const size_t at = size_t(idx) * d + c;
    return p.o_is_f32 ? static_cast<const float*>(p.o)[at]
                      : __bfloat162float(static_cast<const __nv_bfloat16*>(p.o)[at]);
  }
};

// One CTA per (row, head); threads stride over d. Every thread reads the parts' lse before
// any output is written, so the output must not alias a part.
template <class Parts>
__global__ void merge_kernel(Parts parts, int d, void* o, bool o_is_f32, float* lse) {
  const int idx = blockIdx.x;  // row * heads + head
  const int n = parts.count();
  float m = -INFINITY;
  for (int i = 0; i < n; ++i) m = fmaxf(m, parts.lse_at(i, idx));
  float sum = 0.0f;
  if (m != -INFINITY)
    for (int i = 0; i < n; ++i) sum += expf(parts.lse_at(i, idx) - m);
  const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    float acc = 0.0f;
    if (sum > 0.0f)
      for (int i = 0; i < n; ++i) {
        const float l = parts.lse_at(i, idx);
        if (l != -INFINITY) acc += expf(l - m) * parts.o_at(i, idx, c);
      }
    acc *= inv;
    if (o_is_f32)
      static_cast<float*>(o)[size_t(idx) * d + c] = acc;
    else
      static_cast<__nv_bfloat16*>(o)[size_t(idx) * d + c] = __float2bfloat16(acc);
  }
  if (threadIdx.x == 0) lse[idx] = sum > 0.0f ? m + logf(sum) : -INFINITY;
}

int threads_for(int d) { return d < 128 ? d : 128; }

}  // namespace

cudaError_t merge_attention_states(const float* o_parts, const float* lse_parts, int n, int rows, int heads, int d,
                                   void* o, bool o_is_f32, float* lse, cudaStream_t stream) {
  if (n <= 0 || rows < 0 || heads <= 0 || d <= 0) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  const ContiguousParts parts{o_parts, lse_parts, n, rows * heads, d};
  merge_kernel<<<rows * heads, threads_for(d), 0, stream>>>(parts, d, o, o_is_f32, lse);
  return cudaGetLastError();
}

cudaError_t merge_attention_list(const MergePartList& parts, int rows, int heads, int d, void* o, bool o_is_f32,
                                 float* lse, cudaStream_t stream) {
  if (parts.n <= 0 || parts.n > kMaxMergeParts || rows < 0 || heads <= 0 || d <= 0) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  merge_kernel<<<rows * heads, threads_for(d), 0, stream>>>(ListedParts{parts, d}, d, o, o_is_f32, lse);
  return cudaGetLastError();
}

}  // namespace starmesh::kernels
