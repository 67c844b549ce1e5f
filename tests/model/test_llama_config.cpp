#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <numbers>
#include <string>

#include "starmesh/model/llama_config.hpp"

using namespace starmesh;

namespace {

// config.json of meta-llama/Llama-2-7b-hf (transformers 4.31).
const char* kLlama2_7B = R"({
  "architectures": ["LlamaForCausalLM"],
  "bos_token_id": 1,
  "eos_token_id": 2,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 11008,
  "max_position_embeddings": 4096,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 32,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": null,
  "tie_word_embeddings": false,
  "torch_dtype": "float16",
  "transformers_version": "4.31.0.dev0",
  "use_cache": true,
  "vocab_size": 32000
})";

// config.json of meta-llama/Llama-3.1-8B-Instruct (transformers 4.43).
const char* kLlama31_8B = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009],
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.43.0.dev0",
  "use_cache": true,
  "vocab_size": 128256
})";

// config.json of meta-llama/Llama-3.2-1B (transformers 4.45).
const char* kLlama32_1B = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": 128001,
  "head_dim": 64,
  "hidden_act": "silu",
  "hidden_size": 2048,
  "initializer_range": 0.02,
  "intermediate_size": 8192,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 16,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 32.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.45.0.dev0",
  "use_cache": true,
  "vocab_size": 128256
})";

// A small valid config with one placeholder, @, spliced in to test one field at a time.
const char* kTemplate = R"({
  "model_type": "llama", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 128,
  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
  "max_position_embeddings": 256, "rms_norm_eps": 1e-6 @
})";

std::string with(const std::string& extra) {
  std::string s = kTemplate;
  return s.replace(s.find('@'), 1, extra);
}

LlamaConfig parse_ok(const std::string& text) {
  auto c = parse_llama_config(text);
  REQUIRE_MESSAGE(c.has_value(), (c ? "" : c.error().message));
  return *c;
}

// The message of a refusal; it must name every one of `names`.
void check_refused(const std::string& text, std::initializer_list<const char*> names) {
  auto c = parse_llama_config(text);
  REQUIRE_FALSE(c.has_value());
  const std::string& msg = c.error().message;
  CAPTURE(msg);
  for (const char* n : names) CHECK(msg.find(n) != std::string::npos);
}

bool close_rel(float got, double want) { return std::fabs(double(got) - want) <= 1e-6 * std::fabs(want); }

// HF llama3 rescaling of one frequency, written out again here from the formulas.
double llama3_reference(double theta, int head_dim, int i, double factor, double low, double high, double orig) {
  const double base = std::exp(-std::log(theta) * (2.0 * i) / head_dim);
  const double wavelen = 2.0 * std::numbers::pi / base;
  if (wavelen < orig / high) return base;
  if (wavelen > orig / low) return base / factor;
  const double smooth = (orig / wavelen - low) / (high - low);
  return (1.0 - smooth) * base / factor + smooth * base;
}

}  // namespace

TEST_CASE("Llama-2-7B: defaults for rope_theta, head_dim, no scaling") {
  const LlamaConfig c = parse_ok(kLlama2_7B);
  CHECK(c.vocab_size == 32000);
  CHECK(c.hidden_size == 4096);
  CHECK(c.intermediate_size == 11008);
  CHECK(c.num_hidden_layers == 32);
  CHECK(c.num_attention_heads == 32);
  CHECK(c.num_key_value_heads == 32);
  CHECK(c.head_dim == 128);
  CHECK(c.rms_norm_eps == doctest::Approx(1e-5));
  CHECK(c.rope_theta == 10000.0);
  CHECK_FALSE(c.rope_scaling.has_value());
  CHECK(c.max_position_embeddings == 4096);
  CHECK_FALSE(c.tie_word_embeddings);
  CHECK(c.bos_token_id == 1);
  CHECK(c.eos_token_ids == std::vector<int32_t>{2});
  CHECK(c.torch_dtype == "float16");
}

TEST_CASE("Llama-3.1-8B-Instruct: llama3 rope scaling, GQA, eos list") {
  const LlamaConfig c = parse_ok(kLlama31_8B);
  CHECK(c.vocab_size == 128256);
  CHECK(c.intermediate_size == 14336);
  CHECK(c.num_key_value_heads == 8);
  CHECK(c.head_dim == 128);
  CHECK(c.rope_theta == 500000.0);
  REQUIRE(c.rope_scaling.has_value());
  CHECK(c.rope_scaling->factor == 8.0);
  CHECK(c.rope_scaling->low_freq_factor == 1.0);
  CHECK(c.rope_scaling->high_freq_factor == 4.0);
  CHECK(c.rope_scaling->original_max_position_embeddings == 8192);
  CHECK(c.max_position_embeddings == 131072);
  CHECK(c.bos_token_id == 128000);
  CHECK(c.eos_token_ids == std::vector<int32_t>{128001, 128008, 128009});
  CHECK(c.torch_dtype == "bfloat16");
}

TEST_CASE("Llama-3.2-1B: tied embeddings, explicit head_dim") {
  const LlamaConfig c = parse_ok(kLlama32_1B);
  CHECK(c.tie_word_embeddings);
  CHECK(c.hidden_size == 2048);
  CHECK(c.num_hidden_layers == 16);
  CHECK(c.head_dim == 64);
  REQUIRE(c.rope_scaling.has_value());
  CHECK(c.rope_scaling->factor == 32.0);
  CHECK(c.eos_token_ids == std::vector<int32_t>{128001});
}

TEST_CASE("golden transformers-5 config: rope_parameters") {
  auto loaded = load_llama_config(STARMESH_GOLDEN_MODEL_DIR);
  REQUIRE_MESSAGE(loaded.has_value(), (loaded ? "" : loaded.error().message));
  const LlamaConfig& c = *loaded;
  CHECK(c.vocab_size == 2048);
  CHECK(c.hidden_size == 128);
  CHECK(c.intermediate_size == 384);
  CHECK(c.num_hidden_layers == 4);
  CHECK(c.num_attention_heads == 8);
  CHECK(c.num_key_value_heads == 2);
  CHECK(c.head_dim == 64);
  CHECK(c.rms_norm_eps == doctest::Approx(1e-5));
  CHECK(c.rope_theta == 500000.0);
  REQUIRE(c.rope_scaling.has_value());
  CHECK(c.rope_scaling->factor == 8.0);
  CHECK(c.rope_scaling->low_freq_factor == 1.0);
  CHECK(c.rope_scaling->high_freq_factor == 4.0);
  CHECK(c.rope_scaling->original_max_position_embeddings == 8192);
  CHECK(c.max_position_embeddings == 131072);
  CHECK_FALSE(c.tie_word_embeddings);
  CHECK(c.bos_token_id == 2043);
  CHECK(c.eos_token_ids == std::vector<int32_t>{2044, 2045});
  CHECK_FALSE(c.torch_dtype.has_value());
}

TEST_CASE("format variants") {
  SUBCASE("classic rope_scaling with the old \"type\" key") {
    const LlamaConfig c = parse_ok(with(R"(, "rope_theta": 500000.0, "rope_scaling": {"type": "llama3",
        "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192})"));
    REQUIRE(c.rope_scaling.has_value());
    CHECK(c.rope_scaling->factor == 8.0);
    CHECK(c.rope_theta == 500000.0);
  }
  SUBCASE("rope_scaling absent, rope_type default, head_dim default") {
    const LlamaConfig c = parse_ok(with(R"(, "rope_scaling": {"rope_type": "default"})"));
    CHECK_FALSE(c.rope_scaling.has_value());
    CHECK(c.rope_theta == 10000.0);
    CHECK(c.head_dim == 16);
    CHECK_FALSE(c.bos_token_id.has_value());
    CHECK(c.eos_token_ids.empty());
  }
  SUBCASE("transformers 5 default rope, dtype key") {
    const LlamaConfig c = parse_ok(
        with(R"(, "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"}, "dtype": "bfloat16")"));
    CHECK(c.rope_theta == 1000000.0);
    CHECK_FALSE(c.rope_scaling.has_value());
    CHECK(c.torch_dtype == "bfloat16");
  }
  SUBCASE("num_key_value_heads defaults to num_attention_heads") {
    const LlamaConfig c = parse_ok(R"({"model_type": "llama", "vocab_size": 10, "hidden_size": 32,
        "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
        "max_position_embeddings": 16, "rms_norm_eps": 1e-6, "num_key_value_heads": null,
        "bos_token_id": null, "eos_token_id": null})");
    CHECK(c.num_key_value_heads == 4);
    CHECK(c.head_dim == 8);
  }
  SUBCASE("integral floats are accepted as integers") { CHECK(parse_ok(with(R"(, "head_dim": 16.0)")).head_dim == 16); }
}

TEST_CASE("refusals name the offending field and value") {
  check_refused(with(R"(, "architectures": ["MistralForCausalLM"])"), {"MistralForCausalLM"});
  check_refused(R"({"model_type": "mistral"})", {"model_type", "mistral"});
  check_refused(R"({"vocab_size": 10})", {"model_type"});
  check_refused(with(R"(, "rope_scaling": {"type": "linear", "factor": 2.0})"), {"rope_scaling.type", "linear"});
  check_refused(with(R"(, "rope_scaling": {"rope_type": "dynamic", "factor": 2.0})"),
                {"rope_scaling.rope_type", "dynamic"});
  check_refused(with(R"(, "rope_parameters": {"rope_theta": 10000.0, "rope_type": "yarn", "factor": 4.0})"),
                {"rope_parameters.rope_type", "yarn"});
  check_refused(with(R"(, "rope_parameters": {"rope_theta": 10000.0, "rope_type": "longrope"})"), {"longrope"});
  check_refused(with(R"(, "rope_scaling": {"rope_type": "llama3", "factor": 8.0})"), {"low_freq_factor"});
  check_refused(with(R"(, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0,
      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})"),
                {"high_freq_factor"});
  check_refused(with(R"(, "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default",
      "partial_rotary_factor": 0.5})"),
                {"partial_rotary_factor"});
  check_refused(with(R"(, "attention_bias": true)"), {"attention_bias"});
  check_refused(with(R"(, "mlp_bias": true)"), {"mlp_bias"});
  check_refused(with(R"(, "hidden_act": "gelu")"), {"hidden_act", "gelu"});
  check_refused(with(R"(, "num_key_value_heads": 3)"), {"num_attention_heads", "num_key_value_heads"});
  check_refused(with(R"(, "head_dim": 15)"), {"head_dim", "15"});
  check_refused(with(R"(, "rope_theta": -1.0)"), {"rope_theta"});
  check_refused(with(R"(, "eos_token_id": "</s>")"), {"eos_token_id"});
  check_refused(with(R"(, "tie_word_embeddings": "yes")"), {"tie_word_embeddings"});
  check_refused(R"({"model_type": "llama", "vocab_size": 100, "intermediate_size": 128,
      "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 256,
      "rms_norm_eps": 1e-6})",
                {"hidden_size", "missing"});
  check_refused(R"({"model_type": "llama", "vocab_size": 100, "hidden_size": 0, "intermediate_size": 128,
      "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 256,
      "rms_norm_eps": 1e-6})",
                {"hidden_size", "positive"});
  check_refused(R"({"model_type": "llama", "vocab_size": 100, "hidden_size": 64, "intermediate_size": -5,
      "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 256,
      "rms_norm_eps": 1e-6})",
                {"intermediate_size", "-5"});
  check_refused(R"({"model_type": "llama", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 128,
      "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 256})",
                {"rms_norm_eps"});
  check_refused(R"({"model_type": "llama", "vocab_size": 100, "hidden_size": 60, "intermediate_size": 128,
      "num_hidden_layers": 2, "num_attention_heads": 8, "max_position_embeddings": 256,
      "rms_norm_eps": 1e-6})",
                {"hidden_size", "num_attention_heads"});
  check_refused("{\"model_type\": ", {"not valid JSON"});
  check_refused("[1, 2]", {"object"});
}

TEST_CASE("load_llama_config on a directory without config.json") {
  auto c = load_llama_config("/nonexistent/starmesh-model");
  REQUIRE_FALSE(c.has_value());
  CHECK(c.error().message.find("/nonexistent/starmesh-model") != std::string::npos);
}

TEST_CASE("load_llama_config names the file of a refused config") {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("starmesh_cfg_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config.json") << with(R"(, "hidden_act": "relu")");
  auto c = load_llama_config(dir.string());
  std::filesystem::remove_all(dir);
  REQUIRE_FALSE(c.has_value());
  CHECK(c.error().message ==
        (dir / "config.json").string() + ": hidden_act is \"relu\"; starmesh implements \"silu\" only");
}

TEST_CASE("rope_inv_freq, default rope") {
  const LlamaConfig c = parse_ok(kLlama2_7B);
  const std::vector<float> f = rope_inv_freq(c);
  REQUIRE(f.size() == 64);
  CHECK(f[0] == 1.0f);
  for (int i : {1, 2, 17, 32, 63}) {
    CAPTURE(i);
    const double want = std::exp(-std::log(10000.0) * (2.0 * i) / 128.0);
    CHECK(close_rel(f[i], want));
  }
  CHECK(close_rel(f[32], 0.01));  // 10000^(-1/2)
}

TEST_CASE("rope_inv_freq, llama3 rescaling") {
  SUBCASE("Llama-3.1-8B: all three bands") {
    const LlamaConfig c = parse_ok(kLlama31_8B);
    const std::vector<float> f = rope_inv_freq(c);
    REQUIRE(f.size() == 64);
    // Hand values (Python, float64): high band unchanged, medium band smoothed, low band / 8.
    CHECK(close_rel(f[0], 1.0));
    CHECK(close_rel(f[28], 0.003211445994752591));
    CHECK(close_rel(f[29], 0.002166570763503359));
    CHECK(close_rel(f[31], 0.0008567514129196321));
    CHECK(close_rel(f[34], 0.0001785078127679964));
    CHECK(close_rel(f[35], 9.556212353964683e-05));
    CHECK(close_rel(f[63], 3.068925988914511e-07));
    for (int i = 0; i < 64; ++i) {
      CAPTURE(i);
      CHECK(close_rel(f[i], llama3_reference(500000.0, 128, i, 8.0, 1.0, 4.0, 8192.0)));
      if (i > 0) CHECK(f[i] < f[i - 1]);
    }
  }
  SUBCASE("golden tiny model and Llama-3.2-1B (factor 32)") {
    auto golden = load_llama_config(STARMESH_GOLDEN_MODEL_DIR);
    REQUIRE(golden);
    const std::vector<float> g = rope_inv_freq(*golden);
    REQUIRE(g.size() == 32);
    CHECK(close_rel(g[14], 0.003211445994752591));
    CHECK(close_rel(g[16], 0.0005248461609929547));
    CHECK(close_rel(g[31], 3.767322690173964e-07));
    const std::vector<float> s = rope_inv_freq(parse_ok(kLlama32_1B));
    REQUIRE(s.size() == 32);
    for (int i = 0; i < 32; ++i) {
      CAPTURE(i);
      CHECK(close_rel(g[i], llama3_reference(500000.0, 64, i, 8.0, 1.0, 4.0, 8192.0)));
      CHECK(close_rel(s[i], llama3_reference(500000.0, 64, i, 32.0, 1.0, 4.0, 8192.0)));
    }
  }
}
