#pragma once
// The next-token rule every backend implements (the CPU backend runs this file's reference,
// the CUDA backend a kernel built from the same steps), so that the logits never leave the
// device and both backends draw the same token for the same numbers:
//   greedy (temperature 0 or top_k 1): the first maximum, as torch.argmax;
//   else weights w_i = exp((l_i - max) / temperature) in fixed point (w * 2^32, integers, so
//   sums do not depend on the order of addition); top-k keeps every logit >= the k-th
//   largest (ties at the boundary all stay); top-p then keeps every logit >= the largest
//   threshold whose kept mass reaches ceil(top_p * mass after top-k); the token is the first
//   index, in vocabulary order, whose running kept mass exceeds floor(u * kept mass).
// Thresholds are found by radix selection over an order-preserving 32-bit key of the logit
// (4 passes of 256-bin histograms), never by sorting the vocabulary.
#include <cstdint>
#include <span>

#include "starmesh/core/expected.hpp"

namespace starmesh {

struct SampleSpec {
  float temperature = 0.0f;  // 0: greedy
  int top_k = 0;             // 0: no limit
  float top_p = 1.0f;        // (0, 1]
  double u = 0.0;            // the uniform draw in [0, 1) for this token
};

// One draw of backend_i::sample_rows: a row of the logits and the rule it is drawn by.
struct RowSample {
  int64_t row = 0;
  SampleSpec spec;
};

// Refuses temperature < 0 or not finite, top_k < 0, top_p outside (0, 1], u outside [0, 1).
Status check_sample_spec(const SampleSpec& s);

// Larger float, larger key; NaN maps to 0 (below every number).
uint32_t sample_key(float x);

// The rule above on host logits (at least one element).
Expected<int32_t> sample_reference(std::span<const float> logits, const SampleSpec& s);

}  // namespace starmesh
