#pragma once
// The partial attention state (o, lse) and its exact merge (STAR_ATTENTION.md phase 2):
//   lse = logsumexp_h(lse_h);  o = sum_h exp(lse_h - lse) * o_h
// Natural log, float32. An empty state (lse = -inf, o = 0) merges without NaN.
// The functions here are the host (CPU) merge over f32 tensors, for the wire and the tests;
// the query host merges on its device with backend_i::merge_states.
#include <span>

#include "starmesh/core/tensor.hpp"

namespace starmesh {

struct AttentionState {
  Tensor o;    // [n, heads, d]: f32 on the host; on a device, f32 or the activation dtype
  Tensor lse;  // f32 [n, heads]
  // A state that attended to nothing: o = 0, lse = -inf.
  static AttentionState empty(int64_t n, int64_t heads, int64_t d);
};

// acc <- merge(acc, part), in place; shapes must match.
Status merge_into(AttentionState& acc, const AttentionState& part);
// All parts at once (order does not matter beyond float32 rounding); at least one part.
Expected<AttentionState> merge(std::span<const AttentionState> parts);
// Ragged: o_parts f32 [P, heads, d] and lse_parts [P, heads] hold the partial states of
// R rows back to back; row r owns parts [indptr[r], indptr[r + 1]). Writes o_out [R, heads, d],
// lse_out [R, heads]. A row with no parts comes out empty.
Status merge_ragged(const Tensor& o_parts, const Tensor& lse_parts, std::span<const int64_t> indptr,
                    const Tensor& o_out, const Tensor& lse_out);

}  // namespace starmesh
