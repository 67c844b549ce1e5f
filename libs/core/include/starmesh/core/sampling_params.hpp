#pragma once
// How the next token is drawn: the parameters a client sends and the model's sampler reads
// (here, at the bottom, so the service contract needs nothing but core). Checked by
// validate() in libs/model (starmesh/model/sampler.hpp).
#include <cstdint>

namespace starmesh {

struct SamplingParams {
  float temperature = 0.0f;  // 0: greedy
  int top_k = 0;             // 0: no limit
  float top_p = 1.0f;        // (0, 1]
  uint64_t seed = 0;
};

}  // namespace starmesh
