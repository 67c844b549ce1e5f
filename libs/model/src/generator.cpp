#include "starmesh/model/generator.hpp"

#include <algorithm>
#include <chrono>

namespace starmesh {
namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

Expected<GenerationStats> generate_sampled(const SampledStepFn& step, std::span<const int32_t> prompt,
                                           const GenerationParams& params,
                                           const std::function<bool(int32_t)>& on_token) {
  SM_TRY(validate(params.sampling));
  if (prompt.empty()) return make_error("the prompt is empty: give at least one token");
  if (params.max_new_tokens < 0) return make_error("max_new_tokens must be >= 0");
  Sampler sampler(params.sampling);
  GenerationStats stats;
  stats.prompt_tokens = int64_t(prompt.size());
  auto t0 = std::chrono::steady_clock::now();
  SM_ASSIGN(first, step(prompt, sampler.next_spec()));
  stats.prefill_seconds = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  int32_t next = first.token;
  for (int i = 0; i < params.max_new_tokens; ++i) {
    ++stats.generated_tokens;
    const bool stop = std::find(params.stop_ids.begin(), params.stop_ids.end(), next) != params.stop_ids.end();
    if (!on_token(next) || stop || i + 1 == params.max_new_tokens) break;
    SM_ASSIGN(sampled, step(std::span<const int32_t>(&next, 1), sampler.next_spec()));
    next = sampled.token;
  }
  stats.decode_seconds = seconds_since(t0);
  return stats;
}

Expected<GenerationStats> generate_with(backend_i& backend, const StepFn& step, std::span<const int32_t> prompt,
                                        const GenerationParams& params, const std::function<bool(int32_t)>& on_token) {
  return generate_sampled(
      [&](std::span<const int32_t> ids, const SampleSpec& spec) -> Expected<SampledStep> {
        SM_ASSIGN(logits, step(ids));
        SM_ASSIGN(token, backend.sample(logits, spec));
        return SampledStep{std::move(logits), token};
      },
      prompt, params, on_token);
}

Expected<GenerationStats> generate(const Transformer& model, KvCache& cache, std::span<const int32_t> prompt,
                                   const GenerationParams& params, const std::function<bool(int32_t)>& on_token) {
  const int64_t needed = cache.length() + int64_t(prompt.size()) + params.max_new_tokens;
  if (needed > cache.capacity())
    return make_error("prompt (", prompt.size(), " tokens) + max_new_tokens (", params.max_new_tokens,
                      ") exceed the KV cache capacity of ", cache.capacity(), " tokens");
  return generate_with(
      model.backend(), [&](std::span<const int32_t> ids) { return model.forward(ids, cache); }, prompt, params,
      on_token);
}

}  // namespace starmesh
