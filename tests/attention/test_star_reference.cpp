// Self-checks of the float64 Star Attention reference against HF logits and its own invariants.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "attention/star_reference.hpp"
#include "starmesh/model/safetensors.hpp"

using namespace starmesh;
using starmesh::test::NaiveLlama;

namespace {

const NaiveLlama& tiny_model() {
  static const NaiveLlama m = NaiveLlama::load(STARMESH_GOLDEN_MODEL_DIR);
  return m;
}

struct Golden {
  std::vector<int32_t> ids;   // input_2, [33]
  std::vector<float> logits;  // logits_2, [33, V] f32
};

Golden golden_input_2() {
  auto f = SafetensorsFile::open(STARMESH_FIXTURES_DIR "/golden/reference.safetensors");
  if (!f) FAIL(f.error().message);
  auto ids = f->get("input_2");
  auto logits = f->get("logits_2");
  REQUIRE(ids.has_value());
  REQUIRE(logits.has_value());
  const auto* p = ids->data_as<const int32_t>();
  return {std::vector<int32_t>(p, p + ids->numel()), logits->to_f32_vector()};
}

// ||a - b|| / ||b|| over all rows; infinity if a has a non-finite value.
double rel_norm(const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b) {
  double num = 0, den = 0;
  for (size_t r = 0; r < a.size(); ++r)
    for (size_t i = 0; i < a[r].size(); ++i) {
      if (!std::isfinite(a[r][i])) return INFINITY;
      num += (a[r][i] - b[r][i]) * (a[r][i] - b[r][i]);
      den += b[r][i] * b[r][i];
    }
  return std::sqrt(num / den);
}

// A deterministic context of `n` ids in [0, 2000) and a query of `q` ids.
std::vector<int32_t> ids_of(size_t n, uint32_t seed) {
  std::vector<int32_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = int32_t((seed * 2654435761u + uint32_t(i) * 40503u) % 2000u);
  return v;
}

}  // namespace

TEST_CASE("star reference: global attention matches the HF golden logits") {
  const NaiveLlama& m = tiny_model();
  const Golden g = golden_input_2();
  REQUIRE(g.ids.size() == 33);
  const int64_t V = m.config.vocab_size;
  REQUIRE(g.logits.size() == size_t(33 * V));
  const std::vector<int32_t> ctx(g.ids.begin(), g.ids.begin() + 25), query(g.ids.begin() + 25, g.ids.end());
  const auto ours = test::global_reference_logits(m, ctx, query);
  REQUIRE(ours.size() == 8);
  std::vector<std::vector<double>> hf;
  for (int64_t r = 25; r < 33; ++r) hf.emplace_back(g.logits.begin() + r * V, g.logits.begin() + (r + 1) * V);
  for (size_t r = 0; r < 8; ++r) {
    CAPTURE(r);
    CHECK(rel_norm({ours[r]}, {hf[r]}) < 1e-5);
  }
  const double err = rel_norm(ours, hf);
  MESSAGE("global vs HF relative error: " << err);
  CHECK(err < 1e-5);
}

TEST_CASE("star reference: one block equals global attention") {
  const NaiveLlama& m = tiny_model();
  const auto ctx = ids_of(40, 1), query = ids_of(5, 2);
  const auto global = test::global_reference_logits(m, ctx, query);
  for (bool anchor : {true, false}) {
    CAPTURE(anchor);
    CHECK(rel_norm(test::star_reference_logits(m, ctx, query, 40, 40, anchor), global) < 1e-12);
    CHECK(rel_norm(test::star_reference_logits(m, ctx, query, 64, 16, anchor), global) < 1e-12);
  }
}

TEST_CASE("star reference: four blocks approximate global attention, finitely") {
  const NaiveLlama& m = tiny_model();
  const auto ctx = ids_of(100, 3), query = ids_of(8, 4);
  const auto global = test::global_reference_logits(m, ctx, query);
  const auto star = test::star_reference_logits(m, ctx, query, 25, 25, true);
  const auto no_anchor = test::star_reference_logits(m, ctx, query, 25, 25, false);
  REQUIRE(star.size() == query.size());
  const double e_star = rel_norm(star, global), e_none = rel_norm(no_anchor, global);
  MESSAGE("4 blocks vs global: with anchor " << e_star << ", without " << e_none);
  CHECK(std::isfinite(e_star));
  CHECK(std::isfinite(e_none));
  CHECK(e_star > 1e-9);
  CHECK(e_none > 1e-9);
  CHECK(rel_norm(star, no_anchor) > 1e-9);  // the anchor changes the encoding
}
