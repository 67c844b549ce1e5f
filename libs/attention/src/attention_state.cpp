#include "starmesh/attention/attention_state.hpp"

#include <cmath>
#include <limits>
#include <vector>

namespace starmesh {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

Status check_state(const Tensor& o, const Tensor& lse, const char* what) {
  if (o.rank() != 3) return make_error(what, ": o must be [n, heads, d], got ", to_string(o.shape()));
  SM_TRY(expect_tensor(o, DType::f32, {-1, -1, -1}, what));
  return expect_tensor(lse, DType::f32, {o.dim(0), o.dim(1)}, what);
}

// Merges `count` states of one (row, head) into out: lse_of(i), o_of(i) give part i.
template <class LseOf, class OOf>
void merge_one(int64_t count, int64_t d, LseOf lse_of, OOf o_of, float* o_out, float* lse_out) {
  float m = kNegInf;
  for (int64_t i = 0; i < count; ++i) m = std::max(m, lse_of(i));
  if (m == kNegInf) {  // nothing attended anywhere: stay empty, never exp(-inf - -inf)
    std::fill_n(o_out, d, 0.0f);
    *lse_out = kNegInf;
    return;
  }
  std::vector<double> acc(size_t(d), 0.0);
  double sum = 0;
  for (int64_t i = 0; i < count; ++i) {
    const float l = lse_of(i);
    if (l == kNegInf) continue;
    const double w = std::exp(double(l) - double(m));
    sum += w;
    const float* o = o_of(i);
    for (int64_t c = 0; c < d; ++c) acc[size_t(c)] += w * o[c];
  }
  for (int64_t c = 0; c < d; ++c) o_out[c] = float(acc[size_t(c)] / sum);
  *lse_out = float(double(m) + std::log(sum));
}

}  // namespace

AttentionState AttentionState::empty(int64_t n, int64_t heads, int64_t d) {
  AttentionState s{Tensor::zeros(DType::f32, {n, heads, d}), Tensor::zeros(DType::f32, {n, heads})};
  std::fill_n(s.lse.data_as<float>(), n * heads, kNegInf);
  return s;
}

Status merge_into(AttentionState& acc, const AttentionState& part) {
  const AttentionState pair[] = {acc, part};
  SM_ASSIGN(merged, merge(pair));
  std::copy_n(merged.o.data_as<float>(), merged.o.numel(), acc.o.data_as<float>());
  std::copy_n(merged.lse.data_as<float>(), merged.lse.numel(), acc.lse.data_as<float>());
  return {};
}

Expected<AttentionState> merge(std::span<const AttentionState> parts) {
  if (parts.empty()) return make_error("merge: no attention states to merge");
  for (const AttentionState& p : parts) {
    SM_TRY(check_state(p.o, p.lse, "merge state"));
    if (p.o.shape() != parts[0].o.shape())
      return make_error("merge: state shapes differ: ", to_string(p.o.shape()), " vs ", to_string(parts[0].o.shape()));
  }
  const int64_t n = parts[0].o.dim(0), heads = parts[0].o.dim(1), d = parts[0].o.dim(2);
  AttentionState out = AttentionState::empty(n, heads, d);
  for (int64_t r = 0; r < n * heads; ++r) {
    merge_one(
        int64_t(parts.size()), d, [&](int64_t i) { return parts[size_t(i)].lse.data_as<float>()[r]; },
        [&](int64_t i) { return parts[size_t(i)].o.data_as<float>() + r * d; }, out.o.data_as<float>() + r * d,
        out.lse.data_as<float>() + r);
  }
  return out;
}

Status merge_ragged(const Tensor& o_parts, const Tensor& lse_parts, std::span<const int64_t> indptr,
                    const Tensor& o_out, const Tensor& lse_out) {
  SM_TRY(check_state(o_parts, lse_parts, "merge_ragged parts"));
  SM_TRY(check_state(o_out, lse_out, "merge_ragged out"));
  const int64_t rows = o_out.dim(0), heads = o_out.dim(1), d = o_out.dim(2), total = o_parts.dim(0);
  if (o_parts.dim(1) != heads || o_parts.dim(2) != d)
    return make_error("merge_ragged: parts ", to_string(o_parts.shape()), " do not fit out ", to_string(o_out.shape()));
  if (int64_t(indptr.size()) != rows + 1 || indptr[0] != 0 || indptr[size_t(rows)] != total)
    return make_error("merge_ragged: indptr must have ", rows + 1, " entries from 0 to ", total);
  for (int64_t r = 0; r < rows; ++r)
    if (indptr[size_t(r + 1)] < indptr[size_t(r)]) return make_error("merge_ragged: indptr decreases at row ", r);
  const float* lp = lse_parts.data_as<float>();
  const float* op = o_parts.data_as<float>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t first = indptr[size_t(r)];
      merge_one(
          indptr[size_t(r + 1)] - first, d, [&](int64_t i) { return lp[(first + i) * heads + h]; },
          [&](int64_t i) { return op + ((first + i) * heads + h) * d; }, o_out.data_as<float>() + (r * heads + h) * d,
          lse_out.data_as<float>() + r * heads + h);
    }
  return {};
}

}  // namespace starmesh
