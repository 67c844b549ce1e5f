// The merge of partial attention states: exact over any partition and order, NaN-free.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "starmesh/attention/attention_state.hpp"
#include "starmesh/backend/cpu_backend.hpp"
#include "support/reference.hpp"

using namespace starmesh;
using test::random_vector;

namespace {
constexpr int64_t kN = 5, kHq = 4, kHkv = 2, kD = 16;

// Attention of q over rows [b, e) of k/v on the CPU backend, as a state.
AttentionState slice_state(CpuBackend& cpu, const Tensor& q, const Tensor& k, const Tensor& v, int64_t b, int64_t e) {
  AttentionState s{Tensor::zeros(DType::f32, {kN, kHq, kD}), Tensor::zeros(DType::f32, {kN, kHq})};
  REQUIRE(cpu.attention(q, k.rows(b, e), v.rows(b, e), AttentionMask::none(), 0.25f, s.o, s.lse));
  return s;
}
}  // namespace

TEST_CASE("merge over any partition and order equals attention over all keys (float64)") {
  ThreadPool pool(2);
  CpuBackend cpu(pool);
  std::mt19937 rng(7);
  for (int trial = 0; trial < 20; ++trial) {
    const int64_t nk = 1 + int64_t(rng() % 300);
    auto qv = random_vector(kN * kHq * kD, 10 + trial, -3, 3);
    auto kv = random_vector(size_t(nk * kHkv * kD), 50 + trial, -3, 3);
    auto vv = random_vector(size_t(nk * kHkv * kD), 90 + trial);
    Tensor q = Tensor::from_f32(qv, {kN, kHq, kD}), k = Tensor::from_f32(kv, {nk, kHkv, kD}),
           v = Tensor::from_f32(vv, {nk, kHkv, kD});
    // A random partition into up to 6 pieces, some of them empty.
    std::vector<int64_t> cuts = {0, nk};
    for (int c = 0; c < 5; ++c) cuts.push_back(int64_t(rng() % uint32_t(nk + 1)));
    std::sort(cuts.begin(), cuts.end());
    std::vector<AttentionState> parts;
    for (size_t i = 0; i + 1 < cuts.size(); ++i) parts.push_back(slice_state(cpu, q, k, v, cuts[i], cuts[i + 1]));
    std::shuffle(parts.begin(), parts.end(), rng);
    auto merged = merge(parts).value();
    const auto ref = test::attention_f64(qv, kv, vv, kN, nk, kHq, kHkv, kD, false, 0, 0.25);
    CHECK(test::relative_error(merged.o.to_f32_vector(), ref.o) < 2e-6);
    CHECK(test::relative_error(merged.lse.to_f32_vector(), ref.lse) < 2e-7);
    // Pairwise in place, in another order, agrees too.
    AttentionState acc = AttentionState::empty(kN, kHq, kD);
    for (auto it = parts.rbegin(); it != parts.rend(); ++it) REQUIRE(merge_into(acc, *it));
    CHECK(test::relative_error(acc.o.to_f32_vector(), ref.o) < 2e-6);
  }
}

TEST_CASE("hostile log-sum-exps stay finite and exact") {
  const float inf = INFINITY;
  // Per (row, head): lse values of three parts, including +-80, -inf, and all -inf.
  const float lses[][3] = {{80, -80, 0}, {-inf, 3, -inf}, {-inf, -inf, -inf}, {88, 88, 88}, {-100, -100.5f, -inf}};
  const int64_t rows = 5, d = 3;
  std::vector<AttentionState> parts;
  for (int p = 0; p < 3; ++p) {
    AttentionState s = AttentionState::empty(rows, 1, d);
    for (int r = 0; r < rows; ++r) {
      s.lse.data_as<float>()[r] = lses[r][p];
      for (int c = 0; c < d; ++c) s.o.data_as<float>()[r * d + c] = std::isinf(lses[r][p]) ? 0.0f : float(p + 1 + c);
    }
    parts.push_back(s);
  }
  auto m = merge(parts).value();
  for (int r = 0; r < rows; ++r) {
    double mx = -INFINITY;
    for (float l : lses[r]) mx = std::max(mx, double(l));
    double sum = 0, acc[3] = {0, 0, 0};
    if (std::isfinite(mx))
      for (int p = 0; p < 3; ++p) {
        const double w = std::exp(double(lses[r][p]) - mx);
        sum += w;
        for (int c = 0; c < d; ++c) acc[c] += w * (std::isinf(lses[r][p]) ? 0 : p + 1 + c);
      }
    const float got_lse = m.lse.data_as<float>()[r];
    CAPTURE(r);
    if (!std::isfinite(mx)) {
      CHECK(got_lse == -inf);
    } else {
      CHECK(got_lse == doctest::Approx(mx + std::log(sum)).epsilon(1e-6));
    }
    for (int c = 0; c < d; ++c) {
      const float o = m.o.data_as<float>()[r * d + c];
      CHECK(std::isfinite(o));
      CHECK(o == doctest::Approx(sum > 0 ? acc[c] / sum : 0.0).epsilon(1e-6));
    }
  }
}

TEST_CASE("ragged merge equals per-row n-way merges, and bad indptr is refused") {
  const int64_t heads = 2, d = 4;
  const std::vector<int64_t> indptr = {0, 3, 3, 4, 6};  // row 1 has no parts
  const int64_t total = 6, rows = 4;
  Tensor o = Tensor::from_f32(random_vector(total * heads * d, 3), {total, heads, d});
  Tensor lse = Tensor::from_f32(random_vector(total * heads, 4, -5, 5), {total, heads});
  Tensor o_out = Tensor::zeros(DType::f32, {rows, heads, d}), lse_out = Tensor::zeros(DType::f32, {rows, heads});
  REQUIRE(merge_ragged(o, lse, indptr, o_out, lse_out));
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<AttentionState> parts;
    for (int64_t p = indptr[size_t(r)]; p < indptr[size_t(r + 1)]; ++p)
      parts.push_back({o.rows(p, p + 1), lse.rows(p, p + 1)});
    if (parts.empty()) {
      CHECK(std::isinf(lse_out.data_as<float>()[r * heads]));
      CHECK(o_out.data_as<float>()[r * heads * d] == 0.0f);
      continue;
    }
    auto m = merge(parts).value();
    CHECK(test::relative_error(o_out.rows(r, r + 1).to_f32_vector(), m.o.to_f32_vector()) < 1e-7);
  }
  const std::vector<int64_t> bad = {0, 3, 2, 4, 6};
  CHECK(merge_ragged(o, lse, bad, o_out, lse_out).message().find("decreases") != std::string::npos);
  CHECK_FALSE(merge(std::vector<AttentionState>{}));
}
