// Merge of n partial attention states per (row, head), exact and NaN-free:
//   lse = log sum_i exp(lse_i);  o = sum_i exp(lse_i - lse) o_i.
#include <cuda_bf16.h>

#include <cmath>

#include "starmesh/kernels/attention.hpp"

namespace starmesh::kernels {
namespace {

// One CTA per (row, head); threads stride over d.
__global__ void merge_kernel(const float* __restrict__ o_parts, const float* __restrict__ lse_parts, int n, int rh,
                             int d, void* o, bool o_is_f32, float* lse) {
  const int idx = blockIdx.x;  // row * heads + head
  float m = -INFINITY;
  for (int i = 0; i < n; ++i) m = fmaxf(m, lse_parts[size_t(i) * rh + idx]);
  float sum = 0.0f;
  if (m != -INFINITY)
    for (int i = 0; i < n; ++i) sum += expf(lse_parts[size_t(i) * rh + idx] - m);
  const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    float acc = 0.0f;
    if (sum > 0.0f)
      for (int i = 0; i < n; ++i) {
        const float l = lse_parts[size_t(i) * rh + idx];
        if (l != -INFINITY) acc += expf(l - m) * o_parts[(size_t(i) * rh + idx) * d + c];
      }
    acc *= inv;
    if (o_is_f32)
      static_cast<float*>(o)[size_t(idx) * d + c] = acc;
    else
      static_cast<__nv_bfloat16*>(o)[size_t(idx) * d + c] = __float2bfloat16(acc);
  }
  if (threadIdx.x == 0) lse[idx] = sum > 0.0f ? m + logf(sum) : -INFINITY;
}

}  // namespace

cudaError_t merge_attention_states(const float* o_parts, const float* lse_parts, int n, int rows, int heads, int d,
                                   void* o, bool o_is_f32, float* lse, cudaStream_t stream) {
  if (n <= 0 || rows < 0 || heads <= 0 || d <= 0) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  const int threads = d < 128 ? d : 128;
  merge_kernel<<<rows * heads, threads, 0, stream>>>(o_parts, lse_parts, n, rows * heads, d, o, o_is_f32, lse);
  return cudaGetLastError();
}

}  // namespace starmesh::kernels
