#include "starmesh/model/llama_config.hpp"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <numbers>
#include <sstream>

namespace starmesh {
namespace {

using json = nlohmann::json;

// `j[key]`, or nullptr when the key is absent or null (HF writes null for "unset").
const json* field(const json& j, std::string_view key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

// An integral JSON number (4096 or 4096.0) as int64.
bool as_int(const json& v, int64_t& out) {
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max())) return false;
    out = v.get<int64_t>();
    return true;
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::trunc(d) != d || std::fabs(d) > 9.0e15) return false;
    out = int64_t(d);
    return true;
  }
  return false;
}

Expected<std::optional<int64_t>> opt_int(const json& j, std::string_view key, std::string_view where) {
  const json* v = field(j, key);
  if (!v) return std::optional<int64_t>();
  int64_t out = 0;
  if (!as_int(*v, out)) return make_error("config.json: ", where, key, " must be an integer, got ", v->dump());
  return std::optional<int64_t>(out);
}

Expected<std::optional<double>> opt_double(const json& j, std::string_view key, std::string_view where) {
  const json* v = field(j, key);
  if (!v) return std::optional<double>();
  if (!v->is_number()) return make_error("config.json: ", where, key, " must be a number, got ", v->dump());
  return std::optional<double>(v->get<double>());
}

Expected<bool> opt_bool(const json& j, std::string_view key, bool fallback) {
  const json* v = field(j, key);
  if (!v) return fallback;
  if (!v->is_boolean()) return make_error("config.json: ", key, " must be true or false, got ", v->dump());
  return v->get<bool>();
}

// A required positive integer (a size, a count), at most `max` (what a loader may multiply).
Expected<int64_t> positive_int(const json& j, std::string_view key, int64_t max, std::string_view where = "") {
  SM_ASSIGN(v, opt_int(j, key, where));
  if (!v) return make_error(ErrorCode::invalid_argument, "config.json: required field ", where, key, " is missing");
  if (*v <= 0)
    return make_error(ErrorCode::invalid_argument, "config.json: ", where, key, " must be positive, got ", *v);
  if (*v > max)
    return make_error(ErrorCode::invalid_argument, "config.json: ", where, key, " is ", *v, ", more than the ", max,
                      " starmesh serves");
  return *v;
}

Expected<double> positive_double(const json& j, std::string_view key, std::string_view where) {
  SM_ASSIGN(v, opt_double(j, key, where));
  if (!v) return make_error("config.json: required field ", where, key, " is missing");
  if (!(*v > 0) || !std::isfinite(*v))
    return make_error("config.json: ", where, key, " must be a positive number, got ", json(*v).dump());
  return *v;
}

Expected<int32_t> token_id(const json& v, std::string_view key) {
  int64_t id = 0;
  if (!as_int(v, id) || id < 0 || id > std::numeric_limits<int32_t>::max())
    return make_error("config.json: ", key, " must hold non-negative token ids, got ", v.dump());
  return int32_t(id);
}

// Architecture and the switches that would change the math.
Status check_architecture(const json& j) {
  if (const json* archs = field(j, "architectures")) {
    if (!archs->is_array()) return make_error("config.json: architectures must be a list, got ", archs->dump());
    for (const json& a : *archs) {
      if (!a.is_string() || a.get<std::string>() != "LlamaForCausalLM")
        return make_error("config.json: architectures lists ", a.dump(), "; starmesh runs LlamaForCausalLM only");
    }
  }
  const json* model_type = field(j, "model_type");
  if (!model_type) return make_error("config.json: required field model_type is missing (expected \"llama\")");
  if (!model_type->is_string() || model_type->get<std::string>() != "llama")
    return make_error("config.json: model_type is ", model_type->dump(),
                      "; starmesh runs Llama models (model_type \"llama\") only");
  if (const json* act = field(j, "hidden_act")) {
    if (!act->is_string() || act->get<std::string>() != "silu")
      return make_error("config.json: hidden_act is ", act->dump(), "; starmesh implements \"silu\" only");
  }
  for (const char* bias : {"attention_bias", "mlp_bias"}) {
    SM_ASSIGN(on, opt_bool(j, bias, false));
    if (on) return make_error("config.json: ", bias, " is true; starmesh implements Llama without biases");
  }
  return Status::ok();
}

Status check_partial_rotary(const json& j, std::string_view where) {
  SM_ASSIGN(prf, opt_double(j, "partial_rotary_factor", where));
  if (prf && *prf != 1.0)
    return make_error("config.json: ", where, "partial_rotary_factor is ", json(*prf).dump(),
                      "; starmesh rotates the whole head (1.0) only");
  return Status::ok();
}

// theta and scaling, from rope_parameters (transformers 5) or rope_theta + rope_scaling.
Status parse_rope(const json& j, LlamaConfig& c) {
  SM_TRY(check_partial_rotary(j, ""));
  SM_ASSIGN(top_theta, opt_double(j, "rope_theta", ""));
  const json* params = field(j, "rope_parameters");
  std::string where = "rope_parameters.";
  std::optional<double> theta = top_theta;
  if (params) {
    if (!params->is_object()) return make_error("config.json: rope_parameters must be an object, got ", params->dump());
    SM_ASSIGN(p_theta, opt_double(*params, "rope_theta", where));
    if (p_theta) theta = p_theta;
  } else {
    params = field(j, "rope_scaling");
    where = "rope_scaling.";
    if (params && !params->is_object())
      return make_error("config.json: rope_scaling must be an object or null, got ", params->dump());
  }
  c.rope_theta = theta.value_or(10000.0);
  if (!(c.rope_theta > 0) || !std::isfinite(c.rope_theta))
    return make_error("config.json: rope_theta must be a positive number, got ", json(c.rope_theta).dump());
  if (!params) return Status::ok();

  SM_TRY(check_partial_rotary(*params, where));
  const json* type = field(*params, "rope_type");
  std::string type_key = "rope_type";
  if (!type) {
    type = field(*params, "type");
    type_key = "type";
  }
  if (!type) {
    for (const auto& [k, v] : params->items()) {
      if (v.is_object())  // per-layer-type rope (Gemma-style): not a Llama thing
        return make_error("config.json: ", where, k,
                          " is a nested rope configuration; starmesh "
                          "supports one rope_type (\"default\" or \"llama3\") for all layers");
    }
    return Status::ok();  // HF's default
  }
  if (!type->is_string()) return make_error("config.json: ", where, type_key, " must be a string, got ", type->dump());
  const std::string name = type->get<std::string>();
  if (name == "default") return Status::ok();
  if (name != "llama3")
    return make_error("config.json: ", where, type_key, " is \"", name,
                      "\"; starmesh supports \"default\" and \"llama3\" rope only");
  Llama3RopeScaling s;
  SM_ASSIGN(factor, positive_double(*params, "factor", where));
  SM_ASSIGN(low, positive_double(*params, "low_freq_factor", where));
  SM_ASSIGN(high, positive_double(*params, "high_freq_factor", where));
  SM_ASSIGN(orig, positive_int(*params, "original_max_position_embeddings", kMaxPositions, where));
  if (!(high > low))
    return make_error("config.json: ", where, "high_freq_factor (", json(high).dump(),
                      ") must be greater than low_freq_factor (", json(low).dump(), ")");
  s.factor = factor;
  s.low_freq_factor = low;
  s.high_freq_factor = high;
  s.original_max_position_embeddings = orig;
  c.rope_scaling = s;
  return Status::ok();
}

Expected<LlamaConfig> parse(const json& j) {
  if (!j.is_object()) return make_error("config.json: expected a JSON object");
  SM_TRY(check_architecture(j));
  LlamaConfig c;
  SM_ASSIGN(vocab, positive_int(j, "vocab_size", kMaxVocabulary));
  SM_ASSIGN(hidden, positive_int(j, "hidden_size", kMaxModelWidth));
  SM_ASSIGN(inter, positive_int(j, "intermediate_size", kMaxModelWidth));
  SM_ASSIGN(layers, positive_int(j, "num_hidden_layers", kMaxLayers));
  SM_ASSIGN(heads, positive_int(j, "num_attention_heads", kMaxHeads));
  SM_ASSIGN(max_pos, positive_int(j, "max_position_embeddings", kMaxPositions));
  SM_ASSIGN(eps, positive_double(j, "rms_norm_eps", ""));
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = inter;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.max_position_embeddings = max_pos;
  c.rms_norm_eps = eps;

  SM_ASSIGN(kv, opt_int(j, "num_key_value_heads", ""));
  c.num_key_value_heads = kv.value_or(heads);
  if (c.num_key_value_heads <= 0)
    return make_error("config.json: num_key_value_heads must be positive, got ", c.num_key_value_heads);
  if (heads % c.num_key_value_heads != 0)
    return make_error("config.json: num_attention_heads (", heads, ") must be a multiple of num_key_value_heads (",
                      c.num_key_value_heads, ")");
  SM_ASSIGN(head_dim, opt_int(j, "head_dim", ""));
  if (head_dim) {
    c.head_dim = *head_dim;
  } else {
    if (hidden % heads != 0)
      return make_error("config.json: hidden_size (", hidden, ") is not a multiple of num_attention_heads (", heads,
                        ") and head_dim is not given");
    c.head_dim = hidden / heads;
  }
  if (c.head_dim <= 0 || c.head_dim % 2 != 0 || c.head_dim > kMaxHeadDim)
    return make_error(ErrorCode::invalid_argument,
                      "config.json: head_dim must be positive, even (rope rotates pairs) and at most ", kMaxHeadDim,
                      ", got ", c.head_dim);

  SM_TRY(parse_rope(j, c));
  SM_ASSIGN(tie, opt_bool(j, "tie_word_embeddings", false));
  c.tie_word_embeddings = tie;

  if (const json* bos = field(j, "bos_token_id")) {
    SM_ASSIGN(id, token_id(*bos, "bos_token_id"));
    c.bos_token_id = id;
  }
  if (const json* eos = field(j, "eos_token_id")) {
    if (eos->is_array()) {
      for (const json& e : *eos) {
        SM_ASSIGN(id, token_id(e, "eos_token_id"));
        c.eos_token_ids.push_back(id);
      }
    } else {
      SM_ASSIGN(id, token_id(*eos, "eos_token_id"));
      c.eos_token_ids.push_back(id);
    }
  }
  for (const char* key : {"dtype", "torch_dtype"}) {  // transformers 5 writes "dtype"
    if (c.torch_dtype) break;
    if (const json* d = field(j, key)) {
      if (!d->is_string()) return make_error("config.json: ", key, " must be a string, got ", d->dump());
      c.torch_dtype = d->get<std::string>();
    }
  }
  return c;
}

}  // namespace

Expected<LlamaConfig> parse_llama_config(std::string_view json_text) {
  json j;
  try {
    j = json::parse(json_text.begin(), json_text.end());
  } catch (const json::exception& e) {
    return make_error("config.json is not valid JSON (", e.what(), ")");
  }
  return parse(j);
}

Expected<LlamaConfig> load_llama_config(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / "config.json").string();
  std::ifstream in(path);
  if (!in) return make_error("cannot read ", path, "; is '", dir, "' a HF model directory?");
  std::stringstream ss;
  ss << in.rdbuf();
  auto config = parse_llama_config(ss.str());
  if (!config) {  // "config.json: <what>" becomes "<dir>/config.json: <what>"
    std::string what = config.error().message;
    const std::string_view prefix = "config.json: ";
    if (what.starts_with(prefix)) what.erase(0, prefix.size());
    return make_error(path, ": ", what);
  }
  return config;
}

std::vector<float> rope_inv_freq(const LlamaConfig& c) {
  const int64_t half = c.head_dim / 2;
  std::vector<float> out(size_t(std::max<int64_t>(half, 0)));
  for (int64_t i = 0; i < half; ++i) {
    double inv = 1.0 / std::pow(c.rope_theta, double(2 * i) / double(c.head_dim));
    if (c.rope_scaling) {  // HF _compute_llama3_parameters
      const Llama3RopeScaling& s = *c.rope_scaling;
      const double old_len = double(s.original_max_position_embeddings);
      const double low_freq_wavelen = old_len / s.low_freq_factor;
      const double high_freq_wavelen = old_len / s.high_freq_factor;
      const double wavelen = 2.0 * std::numbers::pi / inv;
      if (wavelen > low_freq_wavelen) {
        inv = inv / s.factor;
      } else if (!(wavelen < high_freq_wavelen)) {
        const double smooth = (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        inv = (1.0 - smooth) * inv / s.factor + smooth * inv;
      }
    }
    out[size_t(i)] = float(inv);
  }
  return out;
}

std::string model_signature(const LlamaConfig& c) {
  return "llama layers=" + std::to_string(c.num_hidden_layers) + " hidden=" + std::to_string(c.hidden_size) +
         " ffn=" + std::to_string(c.intermediate_size) + " heads=" + std::to_string(c.num_attention_heads) + "/" +
         std::to_string(c.num_key_value_heads) + " head_dim=" + std::to_string(c.head_dim) +
         " vocab=" + std::to_string(c.vocab_size);
}

}  // namespace starmesh
