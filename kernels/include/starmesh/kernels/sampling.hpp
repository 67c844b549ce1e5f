#pragma once
// The next token from f32 logits on the device: the rule of
// libs/backend/include/starmesh/backend/sampling.hpp (greedy; temperature, top-k, top-p in
// fixed point; a uniform draw u in [0, 1)), radix selection instead of sorting, one
// cooperative grid of at most one CTA per multiprocessor.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace starmesh::kernels {

// Device scratch sample_token needs (a few tens of KB; reusable between calls on one stream).
size_t sample_workspace_bytes();

// out: one int32 on the device. n >= 1; the caller checks the parameters.
cudaError_t sample_token(const float* logits, int n, float temperature, int top_k, float top_p, double u,
                         int32_t* out, void* workspace, int num_sms, cudaStream_t stream);

}  // namespace starmesh::kernels
