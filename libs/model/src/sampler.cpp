#include "starmesh/model/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace starmesh {

Status validate(const SamplingParams& p) {
  if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature))
    return make_error("temperature must be a finite number >= 0, got ", p.temperature);
  if (p.top_k < 0) return make_error("top_k must be >= 0 (0 means no limit), got ", p.top_k);
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) return make_error("top_p must be in (0, 1], got ", p.top_p);
  return {};
}

int32_t argmax(std::span<const float> logits) {
  return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

int32_t Sampler::sample(std::span<const float> logits) {
  if (params_.temperature == 0.0f || params_.top_k == 1) return argmax(logits);
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  size_t keep = order.size();
  if (params_.top_k > 0) keep = std::min(keep, size_t(params_.top_k));
  // Sorted by logit, highest first; stable on ties so runs repeat exactly.
  std::partial_sort(order.begin(), order.begin() + long(keep), order.end(),
                    [&](int32_t a, int32_t b) { return logits[size_t(a)] > logits[size_t(b)] || (logits[size_t(a)] == logits[size_t(b)] && a < b); });
  order.resize(keep);
  std::vector<double> probs(keep);
  const double top = logits[size_t(order[0])];
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) {
    probs[i] = std::exp((double(logits[size_t(order[i])]) - top) / params_.temperature);
    sum += probs[i];
  }
  // top-p: the smallest prefix whose mass reaches top_p (at least one token).
  double mass = 0;
  size_t cut = keep;
  for (size_t i = 0; i < keep; ++i) {
    mass += probs[i] / sum;
    if (mass >= params_.top_p) {
      cut = i + 1;
      break;
    }
  }
  std::discrete_distribution<size_t> pick(probs.begin(), probs.begin() + long(cut));
  return order[pick(rng_)];
}

}  // namespace starmesh
