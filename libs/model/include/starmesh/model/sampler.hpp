#pragma once
// Next-token choice: greedy (temperature 0), or temperature with top-k and top-p, drawn on
// the logits' backend (backend_i::sample, the rule of starmesh/backend/sampling.hpp) with
// one uniform number per token from a counter-based generator, so a seed reproduces a run.
#include <cstdint>

#include "starmesh/backend/backend.hpp"
#include "starmesh/core/expected.hpp"
#include "starmesh/core/sampling_params.hpp"

namespace starmesh {

Status validate(const SamplingParams& p);

// The index-th uniform number in [0, 1) of a seed's stream (splitmix64, 53 bits).
double uniform_draw(uint64_t seed, uint64_t index);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p) : params_(p) {}
  // The next token from logits f32 [vocab] or [rows, vocab] (the last row) on `backend`.
  Expected<int32_t> next(backend_i& backend, const Tensor& logits);
  // The rule and draw of the next token, for an engine that samples it itself (a decode batch
  // samples all its rows at once); next() is backend.sample(logits, next_spec()).
  SampleSpec next_spec();

 private:
  SamplingParams params_;
  uint64_t draws_ = 0;
};

}  // namespace starmesh
