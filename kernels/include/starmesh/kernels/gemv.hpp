#pragma once
// One-row GEMM (a decode step's projections): out[m] = sum_k x[k] * w[m, k], bf16 in, f32
// accumulation, bf16 or f32 out. Bound by reading w once: one warp per output, 16-byte loads
// with several in flight per lane. cuBLASLt's kernels for one row leave the small weights
// (4096 x 4096) at about half the copy bandwidth (bench/NOTES.md, D5).
#include <cuda_runtime.h>

#include <cstdint>

namespace starmesh::kernels {

// What the kernel does with a row's sum: store it, add it to out (a residual add), or, w
// holding m gate rows then m up rows, store silu(gate) * up (a SwiGLU MLP's first half).
enum class GemvEpilogue { store, accumulate, swiglu };

// 16-byte aligned x and w, and k % 8 == 0 (whole 16-byte vectors per row).
bool gemv_supported(const void* x, const void* w, int64_t k);
cudaError_t gemv_bf16(const void* x, const void* w, void* out, bool out_f32, int64_t m, int64_t k, cudaStream_t stream,
                      GemvEpilogue epilogue = GemvEpilogue::store);
// The same with the launch shape named (the benchmark compares them): `unroll` 16-byte loads
// in flight per lane (4, 8 or 16), `warps_per_block` rows per CTA (1-8).
cudaError_t gemv_bf16_variant(const void* x, const void* w, void* out, bool out_f32, int64_t m, int64_t k, int unroll,
                              int warps_per_block, cudaStream_t stream, GemvEpilogue epilogue = GemvEpilogue::store);

}  // namespace starmesh::kernels
