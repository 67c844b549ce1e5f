#include <doctest/doctest.h>

#include <map>

#include "starmesh/backend/cpu_backend.hpp"
#include "starmesh/model/sampler.hpp"
#include "starmesh/model/utf8_stream.hpp"

using namespace starmesh;

namespace {
struct Cpu {
  ThreadPool pool{1};
  CpuBackend cpu{pool};
  Tensor logits(std::vector<float> v) {
    const int64_t n = int64_t(v.size());
    return Tensor::from_f32(std::move(v), {1, n});
  }
};
}  // namespace

TEST_CASE_FIXTURE(Cpu, "greedy picks the first maximum, and top-k 2 never leaves the top two") {
  const Tensor l = logits({0.5f, 3.0f, -1.0f, 3.0f, 2.9f});
  Sampler greedy(SamplingParams{});
  CHECK(greedy.next(cpu, l).value() == 1);
  Sampler topk(SamplingParams{2.0f, 2, 1.0f, 42});
  std::map<int32_t, int> seen;
  for (int i = 0; i < 2000; ++i) ++seen[topk.next(cpu, l).value()];
  CHECK(seen.size() == 2);
  CHECK(seen[1] > 800);  // tied logits: about half each
  CHECK(seen[3] > 800);
}

TEST_CASE_FIXTURE(Cpu, "top-p keeps the smallest prefix reaching the mass, and a seed repeats its run") {
  // Probabilities at temperature 1: ~0.665, 0.245, 0.090 -> top_p 0.6 keeps only the first.
  const Tensor l = logits({2.0f, 1.0f, 0.0f});
  Sampler s(SamplingParams{1.0f, 0, 0.6f, 1});
  for (int i = 0; i < 200; ++i) CHECK(s.next(cpu, l).value() == 0);
  Sampler all(SamplingParams{1.0f, 0, 1.0f, 1});
  std::map<int32_t, int> seen;
  std::vector<int32_t> run;
  for (int i = 0; i < 3000; ++i) run.push_back(all.next(cpu, l).value());
  for (int32_t id : run) ++seen[id];
  CHECK(seen[0] == doctest::Approx(3000 * 0.665).epsilon(0.08));
  CHECK(seen[2] == doctest::Approx(3000 * 0.090).epsilon(0.25));
  Sampler again(SamplingParams{1.0f, 0, 1.0f, 1}), other(SamplingParams{1.0f, 0, 1.0f, 2});
  std::vector<int32_t> run2, run3;
  for (int i = 0; i < 3000; ++i) {
    run2.push_back(again.next(cpu, l).value());
    run3.push_back(other.next(cpu, l).value());
  }
  CHECK(run2 == run);
  CHECK(run3 != run);
}

TEST_CASE("uniform draws lie between 0 and 1 and look uniform") {
  double sum = 0, lo = 1, hi = 0;
  for (uint64_t i = 0; i < 100000; ++i) {
    const double u = uniform_draw(7, i);
    REQUIRE(u >= 0.0);
    REQUIRE(u < 1.0);
    sum += u;
    lo = std::min(lo, u);
    hi = std::max(hi, u);
  }
  CHECK(sum / 100000 == doctest::Approx(0.5).epsilon(0.01));
  CHECK(lo < 1e-3);
  CHECK(hi > 1 - 1e-3);
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
  CHECK(s.flush() == "\xEF\xBF\xBD");  // a lone lead at the end: U+FFFD, never a broken byte
  CHECK(s.flush().empty());
}

TEST_CASE("utf8 stream turns bytes that cannot be UTF-8 into U+FFFD") {
  Utf8Stream s;
  const std::string fffd = "\xEF\xBF\xBD";
  CHECK(s.push("a\x80"
               "b") == "a" + fffd + "b");                          // a stray continuation byte
  CHECK(s.push("\xC0\xAF") == fffd + fffd);                        // an overlong encoding
  CHECK(s.push("\xED\xA0\x80") == fffd + fffd + fffd);             // a surrogate
  CHECK(s.push("\xE2\x82x") == fffd + fffd + "x");                 // a sequence cut by an ASCII byte
  CHECK(s.push("\xF4\x90\x80\x80") == fffd + fffd + fffd + fffd);  // above U+10FFFF
  CHECK(s.push("\xF0\x9F\x98\x80") == "\xF0\x9F\x98\x80");         // U+1F600 whole
}
