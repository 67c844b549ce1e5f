#pragma once
// Next-token choice from host logits: greedy (temperature 0), or temperature with top-k and
// top-p filtering from a seeded generator, so a seed reproduces a run.
#include <cstdint>
#include <random>
#include <span>

#include "starmesh/core/expected.hpp"

namespace starmesh {

struct SamplingParams {
  float temperature = 0.0f;  // 0: greedy
  int top_k = 0;             // 0: no limit
  float top_p = 1.0f;        // (0, 1]
  uint64_t seed = 0;
};

Status validate(const SamplingParams& p);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p) : params_(p), rng_(p.seed) {}
  // logits f32 [vocab]. Ties in greedy go to the lowest id, as torch.argmax does.
  int32_t sample(std::span<const float> logits);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
};

int32_t argmax(std::span<const float> logits);

}  // namespace starmesh
