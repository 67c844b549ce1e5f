#pragma once
// The wgmma (sm_90a) kernels, for the dispatcher in attention.cu: the warp-specialised
// prefill kernel and the split-KV partial kernel for few query rows.
#include <cuda_runtime.h>

#include "attention_common.cuh"

namespace starmesh::kernels {

// One q head per CTA, whole key range (no split, no head packing), 16-byte aligned q, k, v.
bool attention_wgmma_supports(const KernelArgs& ka);

// d = 64 or 128. pingpong: the two consumer warpgroups take turns on the tensor cores;
// overlap: each consumer keeps S of one tile and P V of the previous one in flight together.
cudaError_t attention_wgmma(const KernelArgs& ka, int d, bool pingpong, bool overlap, cudaStream_t stream);

// Few rows (q heads of a kv head packed when the plan says so, 64 % group == 0), keys split
// over blockIdx.z (f32 partials when ka.partial), 16-byte aligned q, k, v; d = 64 or 128.
bool attention_wgmma_partial_supports(const KernelArgs& ka);
cudaError_t attention_wgmma_partial(const KernelArgs& ka, int d, int splits, cudaStream_t stream);

}  // namespace starmesh::kernels
