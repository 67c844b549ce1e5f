#pragma once
// The next token from f32 logits on the device: the rule of
// libs/backend/include/starmesh/backend/sampling.hpp (greedy; temperature, top-k, top-p in
// fixed point; a uniform draw u in [0, 1)), radix selection instead of sorting. Greedy is one
// CTA; sampling is one cluster of 8 CTAs (sm_90) holding the logits in shared memory.
#include <cuda_runtime.h>

#include <cstdint>

namespace starmesh::kernels {

// The largest vocabulary sample_token takes when not greedy (the cluster's shared memory).
int sample_max_vocab();

// out: one int32 on the device. n >= 1; the caller checks the parameters. Returns
// cudaErrorNotSupported for a vocabulary above sample_max_vocab() (not greedy).
cudaError_t sample_token(const float* logits, int n, float temperature, int top_k, float top_p, double u, int32_t* out,
                         cudaStream_t stream);

}  // namespace starmesh::kernels
