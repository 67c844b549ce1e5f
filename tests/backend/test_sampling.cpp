// The sampling rule (starmesh/backend/sampling.hpp) against a float64 computation that sorts
// the vocabulary: over a fine grid of uniform draws, every token is drawn as often as its
// probability after temperature, top-k and top-p says; plus greedy ties and bad input.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "starmesh/backend/cpu_backend.hpp"
#include "support/reference.hpp"

using namespace starmesh;
using starmesh::test::random_vector;

namespace {

// Probability of each token by the definition: sort, keep the top k (ties at the k-th value
// stay), softmax at the temperature, keep the smallest sorted prefix reaching top_p (ties at
// its last value stay), renormalise.
std::vector<double> expected_probs(const std::vector<float>& l, float t, int k, float p) {
  const size_t n = l.size();
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return l[a] > l[b]; });
  const float kth = (k > 0 && size_t(k) < n) ? l[order[size_t(k) - 1]] : -INFINITY;
  std::vector<double> w(n, 0.0);
  double sum = 0;
  for (size_t i = 0; i < n; ++i)
    if (l[i] >= kth) sum += (w[i] = std::exp((double(l[i]) - l[order[0]]) / t));
  float cut = kth;
  if (p < 1.0f) {
    double mass = 0;
    for (size_t j : order) {
      if (w[j] == 0) break;
      mass += w[j] / sum;
      if (mass >= p) {
        cut = l[j];
        break;
      }
    }
  }
  double kept = 0;
  for (size_t i = 0; i < n; ++i) kept += (w[i] = l[i] >= cut ? w[i] : 0.0);
  for (double& x : w) x /= kept;
  return w;
}

}  // namespace

TEST_CASE("sampling draws every token as often as temperature, top-k and top-p say") {
  const int grid = 20000;
  struct Spec {
    float t;
    int k;
    float p;
  };
  const Spec specs[] = {{1.0f, 0, 1.0f}, {0.7f, 0, 0.9f}, {1.5f, 5, 1.0f}, {1.0f, 20, 0.5f}, {2.0f, 0, 0.3f}};
  uint64_t seed = 70;
  for (const Spec& s : specs) {
    auto logits = random_vector(64, ++seed, -4.0f, 4.0f);
    const auto want = expected_probs(logits, s.t, s.k, s.p);
    std::vector<int> count(logits.size(), 0);
    for (int j = 0; j < grid; ++j) {
      auto id = sample_reference(logits, SampleSpec{s.t, s.k, s.p, (j + 0.5) / grid});
      REQUIRE(id);
      ++count[size_t(*id)];
    }
    CAPTURE(s.t);
    CAPTURE(s.k);
    CAPTURE(s.p);
    for (size_t i = 0; i < logits.size(); ++i) {
      CAPTURE(i);
      // The grid is an exact inverse CDF: off by at most one draw per boundary.
      CHECK(std::abs(count[i] - want[i] * grid) <= 2.0);
    }
  }
}

TEST_CASE("greedy takes the first maximum, and ties at the top-k boundary all stay") {
  const std::vector<float> l = {0.5f, 3.0f, -1.0f, 3.0f, 2.9f, std::numeric_limits<float>::quiet_NaN()};
  CHECK(sample_reference(l, SampleSpec{}).value() == 1);
  CHECK(sample_reference(l, SampleSpec{1.0f, 1, 1.0f, 0.99}).value() == 1);  // top_k 1 is greedy
  int seen[6] = {};
  for (int j = 0; j < 1000; ++j) ++seen[sample_reference(l, SampleSpec{1.0f, 2, 1.0f, (j + 0.5) / 1000}).value()];
  CHECK(seen[1] == 500);
  CHECK(seen[3] == 500);
  const std::vector<float> tie3 = {1.0f, 2.0f, 1.0f, 0.0f};  // top_k 2: the k-th value 1.0 is tied
  int seen3[4] = {};
  for (int j = 0; j < 1000; ++j) ++seen3[sample_reference(tie3, SampleSpec{1.0f, 2, 1.0f, (j + 0.5) / 1000}).value()];
  CHECK(seen3[0] > 0);
  CHECK(seen3[2] > 0);
  CHECK(seen3[3] == 0);
  CHECK(sample_key(-0.0f) < sample_key(0.0f));
  CHECK(sample_key(-1.0f) < sample_key(-0.5f));
  CHECK(sample_key(std::numeric_limits<float>::quiet_NaN()) < sample_key(-INFINITY));
}

TEST_CASE("degenerate logits and temperatures draw a defined token: NaN weighs nothing, the top always weighs") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // A temperature so small that 1 / T is infinite (a fuzzed request found it: 0 * inf was cast
  // to an integer): the maximum alone, as greedy.
  const std::vector<float> l = {0.5f, 3.0f, nan, 2.9f};
  for (double u : {0.0, 0.5, 0.999}) CHECK(sample_reference(l, SampleSpec{1e-45f, 0, 1.0f, u}).value() == 1);
  // Infinite logits: the +inf ones share the mass; NaN and the rest weigh nothing.
  const std::vector<float> inf = {1.0f, INFINITY, nan, INFINITY, -INFINITY};
  int seen[5] = {};
  for (int j = 0; j < 100; ++j) ++seen[sample_reference(inf, SampleSpec{1.0f, 0, 0.9f, (j + 0.5) / 100}).value()];
  CHECK(seen[1] == 50);
  CHECK(seen[3] == 50);
  // Every logit NaN: the greedy choice, the first.
  const std::vector<float> all_nan(5, nan);
  CHECK(sample_reference(all_nan, SampleSpec{1.0f, 0, 1.0f, 0.7}).value() == 0);
  CHECK(sample_reference(all_nan, SampleSpec{1.0f, 3, 0.5f, 0.7}).value() == 0);
}

TEST_CASE("sampling refuses bad specs and bad logits, naming what is wrong") {
  const std::vector<float> l = {1.0f, 2.0f};
  CHECK(sample_reference(l, SampleSpec{-1.0f}).error().message.find("temperature") != std::string::npos);
  CHECK(sample_reference(l, SampleSpec{1.0f, -2}).error().message.find("top_k") != std::string::npos);
  CHECK(sample_reference(l, SampleSpec{1.0f, 0, 0.0f}).error().message.find("top_p") != std::string::npos);
  CHECK(sample_reference(l, SampleSpec{1.0f, 0, 1.0f, 1.0}).error().message.find("uniform") != std::string::npos);
  CHECK(sample_reference(std::span<const float>(), SampleSpec{}).error().message.find("empty") != std::string::npos);
  ThreadPool pool{1};
  CpuBackend cpu{pool};
  auto bf = cpu.upload(Tensor::from_f32(l, {1, 2}), DType::bf16).value();
  CHECK(cpu.sample(bf, SampleSpec{}).error().message.find("f32") != std::string::npos);
  // [rows, vocab]: the last row decides.
  CHECK(cpu.sample(Tensor::from_f32(std::vector<float>{5.0f, 0.0f, 0.0f, 5.0f}, {2, 2}), SampleSpec{}).value() == 1);
}

TEST_CASE("sample_rows draws each listed row's token by its own rule, as sample does on that row") {
  ThreadPool pool{1};
  CpuBackend cpu{pool};
  const int64_t rows = 5, vocab = 300;
  const Tensor logits = Tensor::from_f32(random_vector(size_t(rows * vocab), 41, -4.0f, 4.0f), {rows, vocab});
  // Rows out of order and one row twice, each with another rule.
  const std::vector<RowSample> draws = {{3, SampleSpec{}},
                                        {0, SampleSpec{1.0f, 0, 1.0f, 0.37}},
                                        {4, SampleSpec{0.7f, 20, 0.9f, 0.81}},
                                        {0, SampleSpec{}},
                                        {2, SampleSpec{1.3f, 0, 0.5f, 0.05}}};
  const std::vector<int32_t> got = cpu.sample_rows(logits, draws).value();
  REQUIRE(got.size() == draws.size());
  for (size_t i = 0; i < draws.size(); ++i) {
    CAPTURE(i);
    CHECK(got[i] == cpu.sample(logits.rows(draws[i].row, draws[i].row + 1), draws[i].spec).value());
  }
  // Rows differ, so the greedy draws of rows 3 and 0 are different tokens: a mix-up would show.
  CHECK(got[0] != got[3]);
  CHECK(cpu.sample_rows(logits, {}).value().empty());
  // A row out of range, a bad rule and logits that are not [rows, vocab] are refused.
  CHECK(cpu.sample_rows(logits, std::vector<RowSample>{{5, SampleSpec{}}}).error().message.find("row 5") !=
        std::string::npos);
  CHECK(cpu.sample_rows(logits, std::vector<RowSample>{{0, SampleSpec{}}, {1, SampleSpec{-1.0f}}}).error().code ==
        ErrorCode::invalid_argument);
  CHECK_FALSE(cpu.sample_rows(Tensor::from_f32(std::vector<float>(4, 0.0f), {4}), std::vector<RowSample>{{0, {}}}));
}
