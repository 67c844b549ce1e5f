#include "starmesh/model/sampler.hpp"

#include <cmath>

namespace starmesh {

Status validate(const SamplingParams& p) { return check_sample_spec(SampleSpec{p.temperature, p.top_k, p.top_p, 0.0}); }

double uniform_draw(uint64_t seed, uint64_t index) {
  uint64_t z = seed + (index + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return double(z >> 11) * 0x1.0p-53;
}

SampleSpec Sampler::next_spec() {
  return SampleSpec{params_.temperature, params_.top_k, params_.top_p, uniform_draw(params_.seed, draws_++)};
}

Expected<int32_t> Sampler::next(backend_i& backend, const Tensor& logits) {
  return backend.sample(logits, next_spec());
}

}  // namespace starmesh
