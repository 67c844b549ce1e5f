#include <doctest/doctest.h>

#include <map>

#include "starmesh/model/sampler.hpp"
#include "starmesh/model/utf8_stream.hpp"

using namespace starmesh;

TEST_CASE("greedy picks the first maximum; top-k 2 never leaves the top two") {
  std::vector<float> logits = {0.5f, 3.0f, -1.0f, 3.0f, 2.9f};
  Sampler greedy(SamplingParams{});
  CHECK(greedy.sample(logits) == 1);
  Sampler topk(SamplingParams{2.0f, 2, 1.0f, 42});
  std::map<int32_t, int> seen;
  for (int i = 0; i < 2000; ++i) ++seen[topk.sample(logits)];
  CHECK(seen.size() == 2);
  CHECK(seen.count(1) == 1);
  CHECK(seen.count(3) == 1);
  CHECK(seen[1] > 800);  // tied logits: about half each
  CHECK(seen[3] > 800);
}

TEST_CASE("top-p keeps the smallest prefix reaching the mass") {
  // Probabilities at temperature 1: ~0.665, 0.245, 0.090 -> top_p 0.6 keeps only the first.
  std::vector<float> logits = {2.0f, 1.0f, 0.0f};
  Sampler s(SamplingParams{1.0f, 0, 0.6f, 1});
  for (int i = 0; i < 200; ++i) CHECK(s.sample(logits) == 0);
  Sampler all(SamplingParams{1.0f, 0, 1.0f, 1});
  std::map<int32_t, int> seen;
  for (int i = 0; i < 3000; ++i) ++seen[all.sample(logits)];
  CHECK(seen[0] == doctest::Approx(3000 * 0.665).epsilon(0.08));
  CHECK(seen[2] == doctest::Approx(3000 * 0.090).epsilon(0.25));
}

TEST_CASE("sampling parameters are validated") {
  CHECK(validate(SamplingParams{}));
  CHECK_FALSE(validate(SamplingParams{-1.0f}));
  CHECK_FALSE(validate(SamplingParams{1.0f, -3}));
  CHECK(validate(SamplingParams{1.0f, 0, 1.5f}).message().find("top_p") != std::string::npos);
}

TEST_CASE("utf8 stream holds back a split character") {
  Utf8Stream s;
  const std::string euro = "\xE2\x82\xAC";  // U+20AC, three bytes
  CHECK(s.push("a" + euro.substr(0, 1)) == "a");
  CHECK(s.push(euro.substr(1, 1)).empty());
  CHECK(s.push(euro.substr(2) + "b") == euro + "b");
  CHECK(s.push("\xF0\x9F") == "");
  CHECK(s.flush() == "\xF0\x9F");
}
