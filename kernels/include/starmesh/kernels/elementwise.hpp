#pragma once
// The transformer's non-GEMM ops on bf16 activations (f32 arithmetic inside). Raw pointers
// and a stream; each returns the launch status.
#include <cuda_runtime.h>

#include <cstdint>

namespace starmesh::kernels {

// out[n, d] = x / sqrt(mean(x^2) + eps) * w. x, w, out bf16; w [d].
cudaError_t rms_norm_bf16(const void* x, const void* w, void* out, int n, int d, float eps, cudaStream_t stream);
// x += delta (rounded to bf16, written back), then out = rms_norm(x) * w, in one pass. Needs
// 16-byte aligned pointers and d % 8 == 0, d <= 8192 (add_rms_norm_supported).
bool add_rms_norm_supported(const void* x, const void* delta, const void* w, const void* out, int d);
cudaError_t add_rms_norm_bf16(void* x, const void* delta, const void* w, void* out, int n, int d, float eps,
                              cudaStream_t stream);
// In place, HF rotate-half RoPE: x bf16 [n, heads, d], positions i32 [n], inv_freq f32 [d/2].
cudaError_t rope_bf16(void* x, const int32_t* positions, const float* inv_freq, int n, int heads, int d,
                      cudaStream_t stream);
// rope_bf16 on q [n, hq, d] and k [n, hkv, d], then k_dst = k and v_dst = v ([n, hkv, d]):
// a decode step's RoPE and KV-cache write in one launch. All bf16, contiguous.
cudaError_t rope_store_kv_bf16(void* q, void* k, const void* v, void* k_dst, void* v_dst, const int32_t* positions,
                               const float* inv_freq, int n, int hq, int hkv, int d, cudaStream_t stream);
// out = silu(gate) * up, bf16, count elements.
cudaError_t swiglu_bf16(const void* gate, const void* up, void* out, int64_t count, cudaStream_t stream);
// out = a + b, bf16, count elements (out may alias a).
cudaError_t add_bf16(const void* a, const void* b, void* out, int64_t count, cudaStream_t stream);
// dst[i] = row i of src (row_bytes each): a batch's new KV rows into each request's own
// cache, kScatterRowsPerLaunch rows a launch (the list travels as a kernel argument).
constexpr int kScatterRowsPerLaunch = 64;
cudaError_t scatter_rows(const void* src, void* const* dst, int rows, size_t row_bytes, cudaStream_t stream);
// out[i, :] = table[ids[i], :]; table bf16 [vocab, d]. Ids must be checked by the caller.
cudaError_t embedding_bf16(const int32_t* ids, const void* table, void* out, int n, int d, cudaStream_t stream);

}  // namespace starmesh::kernels
