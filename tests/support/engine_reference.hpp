#pragma once
// What the mesh tests compare with: the single-process engines (Star Attention with a plan,
// or global attention) run through the generation loop, recording tokens and logits.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "starmesh/attention/star_session.hpp"
#include "starmesh/model/generator.hpp"

namespace starmesh::test {

struct Reference {
  std::vector<int32_t> ids;
  std::vector<float> logits;  // [ids.size(), vocab]
};

inline std::vector<int32_t> random_token_ids(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = int32_t(rng() % 2000);
  return v;
}

// ||a - b|| / ||b||; infinite when the sizes differ.
inline double relative_distance(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += double(a[i] - b[i]) * (a[i] - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / (den > 0 ? den : 1));
}

// Ok when `got` is `want` bit for bit (tokens and logits); else which token differs first,
// and how far apart the logits are up to it (`vocab` logits a token).
inline Status same_generation(const Reference& got, const Reference& want, int64_t vocab) {
  if (got.ids != want.ids) {
    size_t first = 0;
    while (first < std::min(got.ids.size(), want.ids.size()) && got.ids[first] == want.ids[first]) ++first;
    const size_t upto = (first + 1) * size_t(vocab);
    const auto prefix = [&](const std::vector<float>& v) {
      return std::vector<float>(v.begin(), v.begin() + std::ptrdiff_t(std::min(upto, v.size())));
    };
    return make_error("token ", first, " differs from the reference's (", got.ids.size(), " and ", want.ids.size(),
                      " tokens); the logits up to it at relative distance ",
                      relative_distance(prefix(got.logits), prefix(want.logits)));
  }
  if (got.logits != want.logits)
    return make_error("the logits differ from the reference's: relative distance ",
                      relative_distance(got.logits, want.logits));
  return {};
}

// Generation from `query` through `step`, as the mesh runs it (the model's stop ids; greedy
// unless `sampling` says otherwise).
inline Reference record_generation(const Transformer& model, const std::vector<int32_t>& query, int max_new,
                                   const StepFn& step, const SamplingParams& sampling = {}) {
  Reference r;
  GenerationParams p;
  p.max_new_tokens = max_new;
  p.sampling = sampling;
  p.stop_ids = model.config().eos_token_ids;
  REQUIRE(generate_with(
      model.backend(),
      [&](std::span<const int32_t> x) {
        auto out = step(x);
        if (out) {  // on the host (a GPU's logits are downloaded)
          auto host = model.backend().download(*out);
          if (!host) return Expected<Tensor>(host.error());
          auto v = host->to_f32_vector();
          r.logits.insert(r.logits.end(), v.begin(), v.end());
        }
        return out;
      },
      query, p,
      [&](int32_t t) {
        r.ids.push_back(t);
        return true;
      }));
  // The logits after the last token are computed only if generation goes on: drop them.
  r.logits.resize(r.ids.size() * size_t(model.config().vocab_size));
  return r;
}

inline Reference star_reference(const Transformer& model, const std::vector<int32_t>& ctx,
                                const std::vector<int32_t>& query, int64_t block, int hosts, int max_new,
                                const SamplingParams& sampling = {}) {
  auto s = StarSession::encode(model, ctx, {block, -1, hosts}, int64_t(query.size()) + max_new).value();
  return record_generation(
      model, query, max_new, [&](std::span<const int32_t> x) { return s->step(x); }, sampling);
}

inline Reference global_reference(const Transformer& model, const std::vector<int32_t>& ctx,
                                  const std::vector<int32_t>& query, int max_new) {
  auto cache = model.make_cache(int64_t(ctx.size() + query.size()) + max_new).value();
  REQUIRE(model.forward(ctx, cache));
  return record_generation(model, query, max_new, [&](std::span<const int32_t> x) { return model.forward(x, cache); });
}

}  // namespace starmesh::test
