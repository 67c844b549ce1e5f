#pragma once
// The warp-specialised wgmma (sm_90a) prefill kernel, for the dispatcher in attention.cu.
#include <cuda_runtime.h>

#include "attention_common.cuh"

namespace starmesh::kernels {

// One q head per CTA, whole key range (no split, no head packing), 16-byte aligned q, k, v.
bool attention_wgmma_supports(const KernelArgs& ka);

// d = 64 or 128. pingpong: the two consumer warpgroups take turns on the tensor cores;
// overlap: each consumer keeps S of one tile and P V of the previous one in flight together.
cudaError_t attention_wgmma(const KernelArgs& ka, int d, bool pingpong, bool overlap, cudaStream_t stream);

}  // namespace starmesh::kernels
