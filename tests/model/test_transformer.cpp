// The golden model against HF transformers (float64 reference, tools/make_golden.py).
#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "starmesh/backend/cpu_backend.hpp"
#include "starmesh/model/generator.hpp"
#include "starmesh/model/safetensors.hpp"
#include "starmesh/model/warm_up.hpp"
#include "support/reference.hpp"

using namespace starmesh;

namespace {
struct Golden {
  ThreadPool pool{2};
  CpuBackend cpu{pool};
  Transformer model = Transformer::load(cpu, STARMESH_GOLDEN_MODEL_DIR).value();
};

std::vector<int32_t> ids_of(const Tensor& t) {
  const int32_t* p = t.data_as<int32_t>();
  return {p, p + t.numel()};
}
}  // namespace

TEST_CASE_FIXTURE(Golden, "golden model logits equal HF transformers within 1e-4") {
  auto ref = SafetensorsFile::open(STARMESH_FIXTURES_DIR "/golden/reference.safetensors").value();
  for (int i = 0; i < 4; ++i) {
    const auto ids = ids_of(ref.get("input_" + std::to_string(i)).value());
    const Tensor want = ref.get("logits_" + std::to_string(i)).value();
    auto cache = model.make_cache(int64_t(ids.size())).value();
    auto got = model.forward(ids, cache, /*all_rows=*/true);
    REQUIRE(got);
    REQUIRE(got->shape() == want.shape());
    const double err = test::relative_error(got->to_f32_vector(), want.to_f32_vector());
    CAPTURE(i);
    CAPTURE(err);
    CHECK(err < 1e-4);
  }
}

TEST_CASE_FIXTURE(Golden, "incremental decoding equals one full forward") {
  auto ref = SafetensorsFile::open(STARMESH_FIXTURES_DIR "/golden/reference.safetensors").value();
  const auto ids = ids_of(ref.get("input_2").value());
  const auto want = ref.get("logits_2").value().to_f32_vector();
  const int64_t vocab = model.config().vocab_size;
  auto cache = model.make_cache(int64_t(ids.size())).value();
  // 10 tokens at once, then one at a time: each step's logits equal the reference row.
  REQUIRE(model.forward(std::span(ids).first(10), cache));
  for (size_t t = 10; t < ids.size(); ++t) {
    auto got = model.forward(std::span(ids).subspan(t, 1), cache).value().to_f32_vector();
    std::vector<float> row(want.begin() + int64_t(t) * vocab, want.begin() + int64_t(t + 1) * vocab);
    CHECK(test::relative_error(got, row) < 1e-4);
  }
  CHECK(cache.length() == int64_t(ids.size()));
}

TEST_CASE_FIXTURE(Golden, "a prefill for the last row's logits, or for KV only, writes the KV of the whole forward") {
  auto ref = SafetensorsFile::open(STARMESH_FIXTURES_DIR "/golden/reference.safetensors").value();
  const auto ids = ids_of(ref.get("input_1").value());
  const int64_t n = int64_t(ids.size()), vocab = model.config().vocab_size;
  auto whole = model.make_cache(n + 1).value(), last = model.make_cache(n + 1).value(),
       kv_only = model.make_cache(n + 1).value();
  const auto all = model.forward(ids, whole, /*all_rows=*/true).value().to_f32_vector();
  const auto one = model.forward(ids, last).value().to_f32_vector();
  REQUIRE(model.append_kv(ids, kv_only));
  // The last layer ran for the last row alone: its logits are the whole forward's last row.
  REQUIRE(one.size() == size_t(vocab));
  CHECK(test::relative_error(one, std::vector<float>(all.end() - vocab, all.end())) < 1e-5);
  // Every layer's KV, the last one's included, is the whole forward's, bit for bit.
  for (const KvCache* c : {&last, &kv_only}) {
    REQUIRE(c->length() == n);
    for (int l = 0; l < model.layers(); ++l) {
      CAPTURE(l);
      CHECK(c->keys(l).to_f32_vector() == whole.keys(l).to_f32_vector());
      CHECK(c->values(l).to_f32_vector() == whole.values(l).to_f32_vector());
    }
  }
  // So the next token decodes the same over each.
  const std::vector<int32_t> next = {7};
  const auto want = model.forward(next, whole).value().to_f32_vector();
  CHECK(model.forward(next, kv_only).value().to_f32_vector() == want);
}

TEST_CASE_FIXTURE(Golden, "greedy generation equals HF for 32 steps") {
  std::ifstream f(STARMESH_FIXTURES_DIR "/golden/greedy.json");
  const auto j = nlohmann::json::parse(f);
  for (const auto& run : j["runs"]) {
    const auto prompt = run["prompt"].get<std::vector<int32_t>>();
    const auto want = run["greedy"].get<std::vector<int32_t>>();
    auto cache = model.make_cache(int64_t(prompt.size() + want.size())).value();
    std::vector<int32_t> got;
    GenerationParams p;
    p.max_new_tokens = int(want.size());
    REQUIRE(generate(model, cache, prompt, p, [&](int32_t id) {
      got.push_back(id);
      return true;
    }));
    CHECK(got == want);
  }
}

TEST_CASE_FIXTURE(Golden, "bad requests are refused with a clear message") {
  auto cache = model.make_cache(8).value();
  std::vector<int32_t> bad = {1, 2, 4096};
  auto r = model.forward(bad, cache);
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("token id 4096") != std::string::npos);
  CHECK(cache.length() == 0);  // nothing half-written became visible
  std::vector<int32_t> long_prompt(9, 1);
  auto r2 = model.forward(long_prompt, cache);
  REQUIRE_FALSE(r2);
  CHECK(r2.error().message.find("capacity") != std::string::npos);
  GenerationParams p;
  p.max_new_tokens = 2;
  p.sampling.top_p = 0;
  std::vector<int32_t> one = {1};
  auto g = generate(model, cache, one, p, [](int32_t) { return true; });
  REQUIRE_FALSE(g);
  CHECK(g.error().message.find("top_p") != std::string::npos);
}

TEST_CASE_FIXTURE(Golden, "seeded sampling repeats and respects top-k") {
  std::vector<int32_t> prompt = {2043, 17, 99};
  auto run = [&](uint64_t seed) {
    auto cache = model.make_cache(40).value();
    GenerationParams p;
    p.max_new_tokens = 20;
    p.sampling = {1.0f, 5, 0.9f, seed};
    std::vector<int32_t> out;
    REQUIRE(generate(model, cache, prompt, p, [&](int32_t id) {
      out.push_back(id);
      return true;
    }));
    return out;
  };
  CHECK(run(7) == run(7));
  CHECK(run(7) != run(8));
}

TEST_CASE_FIXTURE(Golden, "warming up the GEMMs keeps nothing: a forward after it equals one before") {
  const std::vector<int32_t> ids = {5, 17, 42, 8, 99, 3};
  auto before_cache = model.make_cache(16).value();
  const std::vector<float> before = model.forward(ids, before_cache, true).value().to_f32_vector();
  REQUIRE(warm_up_gemms(model, 16));
  auto after_cache = model.make_cache(16).value();
  const std::vector<float> after = model.forward(ids, after_cache, true).value().to_f32_vector();
  CHECK(after == before);
  CHECK(after_cache.length() == int64_t(ids.size()));
}
