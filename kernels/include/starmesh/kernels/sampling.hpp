#pragma once
// The next token from f32 logits on the device: the rule of
// libs/backend/include/starmesh/backend/sampling.hpp (greedy; temperature, top-k, top-p in
// fixed point; a uniform draw u in [0, 1)), one CTA, radix selection instead of sorting.
#include <cuda_runtime.h>

#include <cstdint>

namespace starmesh::kernels {

// out: one int32 on the device. n >= 1; the caller checks the parameters.
cudaError_t sample_token(const float* logits, int n, float temperature, int top_k, float top_p, double u,
                         int32_t* out, cudaStream_t stream);

}  // namespace starmesh::kernels
