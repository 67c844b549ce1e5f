#include "starmesh/backend/sampling.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <vector>

#include "starmesh/backend/backend.hpp"

namespace starmesh {
namespace {

// The largest key t with sum over {i : key_i >= t} of weight(i) >= target (the total must
// reach target), one byte of t per pass from the top.
template <class Weight>
uint32_t select_key(const std::vector<uint32_t>& keys, const Weight& weight, uint64_t target) {
  uint32_t prefix = 0, mask = 0;
  uint64_t above = 0;  // weight of keys whose decided bytes are larger than the prefix
  for (int shift = 24; shift >= 0; shift -= 8) {
    std::array<uint64_t, 256> hist{};
    for (size_t i = 0; i < keys.size(); ++i)
      if ((keys[i] & mask) == prefix) hist[(keys[i] >> shift) & 255] += weight(i);
    uint64_t acc = above;
    for (int b = 255; b >= 0; --b) {
      if (acc + hist[size_t(b)] >= target) {
        prefix |= uint32_t(b) << shift;
        above = acc;
        break;
      }
      acc += hist[size_t(b)];
    }
    mask |= 255u << shift;
  }
  return prefix;
}

// A logit's weight exp((x - top) / T) * 2^32 (inv_t = 1 / T): the top value (ties included)
// weighs 2^32 exactly, also where the quotient is not a number (top infinite, or T so small
// that 1 / T is infinite: 0 * inf); a NaN logit weighs 0. So the kept mass is never 0 unless
// every logit is NaN, where the token is the greedy choice, the first. kernels/src/sampling.cu
// (weight_of) follows the same rule.
uint64_t weight(float x, float top, float inv_t) {
  if (x == top) return uint64_t(1) << 32;
  const float e = expf((x - top) * inv_t);
  return e > 0.0f ? uint64_t(e * 4294967296.0f) : 0;  // a NaN weighs nothing
}

}  // namespace

Status check_sample_spec(const SampleSpec& s) {
  if (!(s.temperature >= 0.0f) || !std::isfinite(s.temperature))
    return make_error(ErrorCode::invalid_argument, "temperature must be a finite number >= 0, got ", s.temperature);
  if (s.top_k < 0)
    return make_error(ErrorCode::invalid_argument, "top_k must be >= 0 (0 means no limit), got ", s.top_k);
  if (!(s.top_p > 0.0f && s.top_p <= 1.0f))
    return make_error(ErrorCode::invalid_argument, "top_p must be in (0, 1], got ", s.top_p);
  if (!(s.u >= 0.0 && s.u < 1.0))
    return make_error(ErrorCode::invalid_argument, "the uniform draw must be in [0, 1), got ", s.u);
  return {};
}

uint32_t sample_key(float x) {
  if (std::isnan(x)) return 0;
  const uint32_t b = std::bit_cast<uint32_t>(x);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

Expected<int64_t> check_sample_args(const Tensor& logits, const SampleSpec& spec, Device dev) {
  SM_TRY(check_sample_spec(spec));
  if (logits.dtype() != DType::f32) return make_error("sample: logits must be f32, got ", dtype_name(logits.dtype()));
  if (logits.numel() == 0 || logits.shape().empty())
    return make_error("sample: logits ", to_string(logits.shape()), " hold no vocabulary");
  if (!(logits.device() == dev)) return make_error("sample: logits are not on this backend's device");
  const int64_t vocab = logits.shape().back();
  if (vocab > int64_t(1) << 30) return make_error("sample: a vocabulary of ", vocab, " entries is too large");
  return vocab;
}

Expected<int64_t> check_sample_rows_args(const Tensor& logits, std::span<const RowSample> draws, Device dev) {
  if (logits.rank() != 2)
    return make_error("sample_rows: logits must be [rows, vocab], got ", to_string(logits.shape()));
  SM_ASSIGN(vocab, check_sample_args(logits, SampleSpec{}, dev));  // the logits, once
  for (const RowSample& d : draws) {
    if (d.row < 0 || d.row >= logits.dim(0))
      return make_error("sample_rows: row ", d.row, " of logits ", to_string(logits.shape()));
    SM_TRY(check_sample_spec(d.spec));
  }
  return vocab;
}

Expected<int32_t> sample_reference(std::span<const float> logits, const SampleSpec& s) {
  SM_TRY(check_sample_spec(s));
  if (logits.empty()) return make_error("cannot sample from empty logits");
  const size_t n = logits.size();
  std::vector<uint32_t> keys(n);
  size_t best = 0;
  for (size_t i = 0; i < n; ++i) {
    keys[i] = sample_key(logits[i]);
    if (keys[i] > keys[best]) best = i;
  }
  if (s.temperature == 0.0f || s.top_k == 1) return int32_t(best);

  const float top = logits[best], inv_t = 1.0f / s.temperature;
  std::vector<uint64_t> w(n);
  for (size_t i = 0; i < n; ++i) w[i] = weight(logits[i], top, inv_t);
  uint32_t floor_key = 0;
  if (s.top_k > 0 && size_t(s.top_k) < n)
    floor_key = select_key(
        keys, [](size_t) { return uint64_t(1); }, uint64_t(s.top_k));
  auto kept_mass = [&](size_t i) { return keys[i] >= floor_key ? w[i] : uint64_t(0); };
  if (s.top_p < 1.0f) {
    uint64_t mass = 0;
    for (size_t i = 0; i < n; ++i) mass += kept_mass(i);
    floor_key = select_key(keys, kept_mass, uint64_t(std::ceil(double(s.top_p) * double(mass))));
  }
  uint64_t mass = 0;
  for (size_t i = 0; i < n; ++i) mass += kept_mass(i);
  const uint64_t r = std::min(uint64_t(s.u * double(mass)), mass - 1);  // mass >= 2^32: the top token's weight
  uint64_t run = 0;
  for (size_t i = 0; i < n; ++i) {
    run += kept_mass(i);
    if (run > r) return int32_t(i);
  }
  return int32_t(best);  // not reached: run ends at mass > r
}

}  // namespace starmesh
