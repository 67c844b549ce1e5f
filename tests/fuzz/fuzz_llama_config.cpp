// libFuzzer target: config.json text from a hostile checkpoint folder. Parsing either fails
// with a message or yields a config whose every size is within the documented bounds.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "starmesh/model/llama_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto config = starmesh::parse_llama_config(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!config) return 0;
  // What a loader multiplies: an accepted config keeps every size within the documented bounds.
  using namespace starmesh;
  const LlamaConfig& c = *config;
  const bool in_bounds =
      c.vocab_size > 0 && c.vocab_size <= kMaxVocabulary && c.hidden_size > 0 && c.hidden_size <= kMaxModelWidth &&
      c.intermediate_size > 0 && c.intermediate_size <= kMaxModelWidth && c.num_hidden_layers > 0 &&
      c.num_hidden_layers <= kMaxLayers && c.num_attention_heads > 0 && c.num_attention_heads <= kMaxHeads &&
      c.num_key_value_heads > 0 && c.num_key_value_heads <= c.num_attention_heads && c.head_dim > 0 &&
      c.head_dim <= kMaxHeadDim && c.max_position_embeddings <= kMaxPositions;
  if (!in_bounds) std::abort();
  (void)rope_inv_freq(c);
  (void)model_signature(c);
  return 0;
}
