#include "starmesh/model/generator.hpp"

#include <algorithm>
#include <chrono>

namespace starmesh {
namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

Expected<GenerationStats> generate(const Transformer& model, KvCache& cache, std::span<const int32_t> prompt,
                                   const GenerationParams& params,
                                   const std::function<bool(int32_t)>& on_token) {
  SM_TRY(validate(params.sampling));
  if (prompt.empty()) return make_error("the prompt is empty: give at least one token");
  if (params.max_new_tokens < 0) return make_error("max_new_tokens must be >= 0");
  const int64_t needed = cache.length() + int64_t(prompt.size()) + params.max_new_tokens;
  if (needed > cache.capacity())
    return make_error("prompt (", prompt.size(), " tokens) + max_new_tokens (", params.max_new_tokens,
                      ") exceed the KV cache capacity of ", cache.capacity(), " tokens");
  Sampler sampler(params.sampling);
  GenerationStats stats;
  stats.prompt_tokens = int64_t(prompt.size());
  auto t0 = std::chrono::steady_clock::now();
  SM_ASSIGN(logits_dev, model.forward(prompt, cache));
  SM_ASSIGN(logits, model.backend().download(logits_dev));
  stats.prefill_seconds = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  for (int step = 0; step < params.max_new_tokens; ++step) {
    const int32_t next = sampler.sample({logits.data_as<float>(), size_t(logits.numel())});
    ++stats.generated_tokens;
    const bool stop = std::find(params.stop_ids.begin(), params.stop_ids.end(), next) != params.stop_ids.end();
    if (!on_token(next) || stop || step + 1 == params.max_new_tokens) break;
    SM_ASSIGN(step_dev, model.forward(std::span<const int32_t>(&next, 1), cache));
    SM_ASSIGN(step_host, model.backend().download(step_dev));
    logits = step_host;
  }
  stats.decode_seconds = seconds_since(t0);
  return stats;
}

}  // namespace starmesh
