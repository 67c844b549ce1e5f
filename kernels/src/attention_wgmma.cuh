#pragma once
// The wgmma (sm_90a) prefill kernel, for the dispatcher in attention.cu.
#include <cuda_runtime.h>

#include "attention_common.cuh"

namespace starmesh::kernels {

// One q head per CTA, whole key range (no split, no head packing); d = 64 or 128.
// pingpong: the two warpgroups alternate on the tensor cores (see WgmmaConfig).
cudaError_t attention_wgmma(const KernelArgs& ka, int d, bool pingpong, cudaStream_t stream);

}  // namespace starmesh::kernels
