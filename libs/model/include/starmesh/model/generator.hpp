#pragma once
// The plain generation loop over global attention: prefill the prompt, then one token at a
// time until max_new_tokens, a stop id, or the callback says stop.
#include <functional>
#include <span>
#include <vector>

#include "starmesh/model/sampler.hpp"
#include "starmesh/model/transformer.hpp"

namespace starmesh {

struct GenerationParams {
  int max_new_tokens = 32;
  SamplingParams sampling;
  std::vector<int32_t> stop_ids;  // generation ends after emitting one of these
};

struct GenerationStats {
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;  // after the first token
};

// Runs the model on some tokens and returns the logits of the last one, [1, vocab], on the
// model's backend: the engine (global attention, the Star Attention query host, ...).
using StepFn = std::function<Expected<Tensor>(std::span<const int32_t> ids)>;

// A step that also draws the token with `spec` (an engine that samples many requests' rows at
// once, after one synchronisation): the logits it drew from, and the token.
struct SampledStep {
  Tensor logits;
  int32_t token = -1;
};
using SampledStepFn = std::function<Expected<SampledStep>(std::span<const int32_t> ids, const SampleSpec& spec)>;

// The loop over such an engine: the same tokens as generate_with over the same logits (one
// draw per token, in order, from params.sampling's seed).
Expected<GenerationStats> generate_sampled(const SampledStepFn& step, std::span<const int32_t> prompt,
                                           const GenerationParams& params,
                                           const std::function<bool(int32_t)>& on_token);

// The loop over any engine. on_token(id) is called for every generated token; returning false
// stops generation.
Expected<GenerationStats> generate_with(backend_i& backend, const StepFn& step, std::span<const int32_t> prompt,
                                        const GenerationParams& params, const std::function<bool(int32_t)>& on_token);

// Global attention over `cache`.
Expected<GenerationStats> generate(const Transformer& model, KvCache& cache, std::span<const int32_t> prompt,
                                   const GenerationParams& params, const std::function<bool(int32_t)>& on_token);

}  // namespace starmesh
