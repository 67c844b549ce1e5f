#pragma once
// The HF Llama config (config.json of a LlamaForCausalLM checkpoint), in both formats:
//   classic (transformers 4): "rope_theta" + "rope_scaling" {"rope_type" or "type", ...}
//   transformers 5:           "rope_parameters" {"rope_theta", "rope_type", ...}
// Anything that would change the math and that we do not implement is refused by name
// (other architectures, biases, activations, rope types), never silently ignored.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "starmesh/core/expected.hpp"
#include "starmesh/model/tokenizer.hpp"

namespace starmesh {

// Llama 3.1-style frequency-dependent rope rescaling (HF rope_type "llama3").
struct Llama3RopeScaling {
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct LlamaConfig {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // default: num_attention_heads
  int64_t head_dim = 0;             // default: hidden_size / num_attention_heads
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  std::optional<Llama3RopeScaling> rope_scaling;  // empty: rope_type "default"
  int64_t max_position_embeddings = 0;
  bool tie_word_embeddings = false;
  std::optional<int32_t> bos_token_id;
  std::vector<int32_t> eos_token_ids;      // "eos_token_id": an int or a list; empty if absent
  std::optional<std::string> torch_dtype;  // "torch_dtype" or "dtype", e.g. "bfloat16"
};

// What a config.json may ask for: a file is hostile until checked, and a loader multiplies
// these (weights, KV per token), so each is bounded far above any real model's (Llama-3.1-405B:
// hidden 16384, ffn 53248, 126 layers, 128 heads, 128K positions). The vocabulary is bounded
// by kMaxVocabulary (tokenizer.hpp).
inline constexpr int64_t kMaxModelWidth = int64_t(1) << 20;  // hidden_size, intermediate_size
inline constexpr int64_t kMaxLayers = 4096;
inline constexpr int64_t kMaxHeads = 4096;
inline constexpr int64_t kMaxHeadDim = 4096;
inline constexpr int64_t kMaxPositions = int64_t(1) << 26;

// Parses and validates config.json text; errors name the offending field and value.
Expected<LlamaConfig> parse_llama_config(std::string_view json_text);
// Reads `dir`/config.json.
Expected<LlamaConfig> load_llama_config(const std::string& dir);

// Rope inverse frequencies, head_dim / 2 values: inv_freq[i] = 1 / theta^(2i / head_dim),
// computed in double, then the llama3 rescaling when configured (as HF's
// _compute_llama3_parameters), rounded to float at the end.
std::vector<float> rope_inv_freq(const LlamaConfig& config);

// "llama layers=4 hidden=128 ffn=384 heads=8/2 head_dim=64 vocab=2048": the shape every process
// of a mesh must serve alike (the router refuses a worker whose signature differs).
std::string model_signature(const LlamaConfig& config);

}  // namespace starmesh
