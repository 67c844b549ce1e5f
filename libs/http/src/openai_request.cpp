// Parsing is strict on purpose: a field the door would silently ignore (n, logprobs, tools)
// gives a client answers it did not ask for, so every field is either honoured exactly,
// harmless to drop (user, metadata, store), or refused with the field named.
#include "starmesh/http/openai_request.hpp"

#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

namespace starmesh::http {
namespace {

using nlohmann::json;

// The fields each endpoint knows; anything else is refused.
const std::set<std::string, std::less<>> kCommonFields = {
    "model",    "stream", "stream_options",   "max_tokens",        "temperature", "top_p",    "seed",
    "stop",     "n",      "presence_penalty", "frequency_penalty", "logit_bias",  "logprobs", "user",
    "metadata", "store",  "starmesh"};
const std::set<std::string, std::less<>> kCompletionFields = {"prompt", "echo", "best_of", "suffix"};
const std::set<std::string, std::less<>> kChatFields = {"messages",      "max_completion_tokens", "top_logprobs",
                                                        "tools",         "tool_choice",           "functions",
                                                        "function_call", "parallel_tool_calls",   "response_format"};
const std::set<std::string, std::less<>> kStarmeshFields = {
    "mode", "block_size", "anchor_size", "max_hosts", "top_k", "keep_context", "context_id", "context", "priority"};

// Builds refusals that name their field.
class Refuse {
 public:
  explicit Refuse(std::string& param) : param_(param) {}
  template <class... Parts>
  Error operator()(std::string_view field, Parts&&... parts) const {
    param_ = std::string(field);
    return make_error(ErrorCode::invalid_argument, std::forward<Parts>(parts)...);
  }

 private:
  std::string& param_;
};

const char* type_name(const json& v) { return v.type_name(); }

Expected<int64_t> integer(const Refuse& refuse, const json& v, std::string_view name, int64_t lo, int64_t hi) {
  if (!v.is_number_integer()) return refuse(name, "'", name, "' must be an integer, got ", type_name(v));
  // Above int64's range nlohmann stores unsigned: out of range either way.
  if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(hi))
    return refuse(name, "'", name, "' must be in [", lo, ", ", hi, "]");
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi) return refuse(name, "'", name, "' must be in [", lo, ", ", hi, "], got ", x);
  return x;
}

Expected<double> number(const Refuse& refuse, const json& v, std::string_view name, double lo, double hi,
                        bool open_low) {
  if (!v.is_number()) return refuse(name, "'", name, "' must be a number, got ", type_name(v));
  const double x = v.get<double>();
  if (!std::isfinite(x) || x > hi || (open_low ? x <= lo : x < lo))
    return refuse(name, "'", name, "' must be in ", open_low ? "(" : "[", lo, ", ", hi, "], got ", x);
  return x;
}

Expected<bool> boolean(const Refuse& refuse, const json& v, std::string_view name) {
  if (!v.is_boolean()) return refuse(name, "'", name, "' must be true or false, got ", type_name(v));
  return v.get<bool>();
}

Expected<std::string> string(const Refuse& refuse, const json& v, std::string_view name, size_t max_bytes) {
  if (!v.is_string()) return refuse(name, "'", name, "' must be a string, got ", type_name(v));
  const auto& s = v.get_ref<const std::string&>();
  if (s.size() > max_bytes) return refuse(name, "'", name, "' may hold at most ", max_bytes, " bytes");
  return s;
}

// A field the door cannot honour unless it holds its neutral value (or null).
Status neutral(const Refuse& refuse, const json& body, std::string_view name, const json& allowed,
               std::string_view why) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null() || *it == allowed) return {};
  return refuse(name, "'", name, "' is not supported: ", why);
}

Status parse_stop(const Refuse& refuse, const json& v, std::vector<std::string>& out) {
  auto one = [&](const json& s) -> Status {
    SM_ASSIGN(text, string(refuse, s, "stop", kMaxStopBytes));
    if (text.empty()) return refuse("stop", "a stop sequence may not be empty");
    out.push_back(std::move(text));
    return {};
  };
  if (v.is_null()) return {};
  if (v.is_string()) return one(v);
  if (!v.is_array()) return refuse("stop", "'stop' must be a string or an array of strings");
  if (v.size() > kMaxStopSequences) return refuse("stop", "'stop' may hold at most ", kMaxStopSequences, " sequences");
  for (const json& s : v) SM_TRY(one(s));
  return {};
}

Status parse_prompt(const Refuse& refuse, const json& v, OpenAiRequest& out) {
  if (v.is_string()) {
    SM_ASSIGN(text, string(refuse, v, "prompt", kMaxTextBytes));
    out.prompt = std::move(text);
    return {};
  }
  if (!v.is_array() || v.empty())
    return refuse("prompt", "'prompt' must be a string, an array of one string, or an array of token ids");
  if (v.size() == 1 && v[0].is_string()) return parse_prompt(refuse, v[0], out);
  if (v[0].is_string()) return refuse("prompt", "one prompt per request: batches of prompts are not supported");
  if (int64_t(v.size()) > kMaxQueryTokens)
    return refuse("prompt", "'prompt' may hold at most ", kMaxQueryTokens, " token ids");
  for (const json& id : v) {
    SM_ASSIGN(x, integer(refuse, id, "prompt", 0, INT32_MAX));
    out.prompt_ids.push_back(int32_t(x));
  }
  return {};
}

Expected<std::string> message_content(const Refuse& refuse, const json& v) {
  if (v.is_string()) return string(refuse, v, "messages", kMaxTextBytes);
  if (!v.is_array()) return refuse("messages", "a message's content must be a string or an array of text parts");
  std::string text;
  for (const json& part : v) {
    if (!part.is_object() || part.value("type", json()) != "text" || !part.contains("text"))
      return refuse("messages", "only text content parts ({\"type\": \"text\", \"text\": ...}) are supported");
    SM_ASSIGN(t, string(refuse, part["text"], "messages", kMaxTextBytes));
    text += t;
  }
  return text;
}

Status parse_messages(const Refuse& refuse, const json& v, std::vector<ChatTurn>& out) {
  if (!v.is_array() || v.empty()) return refuse("messages", "'messages' must be a non-empty array");
  if (v.size() > kMaxMessages) return refuse("messages", "at most ", kMaxMessages, " messages");
  for (const json& m : v) {
    if (!m.is_object()) return refuse("messages", "each message must be an object with a role and a content");
    for (const auto& [key, value] : m.items())
      if (key != "role" && key != "content" && key != "name")
        return refuse("messages", "a message's '", key.substr(0, 64), "' is not supported (role, content, name)");
    SM_ASSIGN(role, string(refuse, m.value("role", json()), "messages", 32));
    if (role == "developer") role = "system";  // OpenAI's newer name for the system role
    if (role != "system" && role != "user" && role != "assistant")
      return refuse("messages", "role '", role, "' is not supported: system, developer, user, assistant");
    if (!m.contains("content")) return refuse("messages", "each message needs a content");
    SM_ASSIGN(content, message_content(refuse, m["content"]));
    out.push_back({std::move(role), std::move(content)});
  }
  return {};
}

Status parse_starmesh(const Refuse& refuse, const json& v, StarmeshOptions& out) {
  if (v.is_null()) return {};
  if (!v.is_object()) return refuse("starmesh", "'starmesh' must be an object");
  for (const auto& [key, value] : v.items())
    if (!kStarmeshFields.count(key))
      return refuse("starmesh." + key.substr(0, 64), "unknown field 'starmesh.", key.substr(0, 64), "'");
  constexpr int64_t kMaxTokens = int64_t(1) << 31;  // the service checks its own, tighter bounds
  for (const auto& [key, value] : v.items()) {
    const std::string name = "starmesh." + key;
    if (value.is_null()) continue;
    if (key == "mode") {
      SM_ASSIGN(text, string(refuse, value, name, 16));
      out.mode = attention_mode_from_string(text);
      if (!out.mode) return refuse(name, "'", name, "' must be \"star\" or \"global\"");
    } else if (key == "block_size") {
      SM_ASSIGN(x, integer(refuse, value, name, 1, kMaxTokens));
      out.block_size = x;
    } else if (key == "anchor_size") {
      SM_ASSIGN(x, integer(refuse, value, name, -1, kMaxTokens));
      out.anchor_size = x;
    } else if (key == "max_hosts") {
      SM_ASSIGN(x, integer(refuse, value, name, 0, 1 << 16));
      out.max_hosts = int(x);
    } else if (key == "top_k") {
      SM_ASSIGN(x, integer(refuse, value, name, 0, 1 << 22));
      out.top_k = int(x);
    } else if (key == "keep_context") {
      SM_ASSIGN(b, boolean(refuse, value, name));
      out.keep_context = b;
    } else if (key == "context_id") {
      SM_ASSIGN(text, string(refuse, value, name, 64));
      auto id = ContextId::parse(text);
      if (!id) return refuse(name, "'", name, "': ", id.error().message);
      out.context_id = *id;
    } else if (key == "context") {
      SM_ASSIGN(text, string(refuse, value, name, kMaxTextBytes));
      out.context = std::move(text);
    } else if (key == "priority") {
      SM_ASSIGN(text, string(refuse, value, name, 16));
      auto p = priority_from_string(text);
      if (!p) return refuse(name, "'", name, "' must be \"low\", \"normal\" or \"high\"");
      out.priority = *p;
    }
  }
  return {};
}

Status parse_body(Endpoint endpoint, const json& body, const Refuse& refuse, OpenAiRequest& out) {
  const bool chat = endpoint == Endpoint::chat;
  for (const auto& [key, value] : body.items())
    if (!kCommonFields.count(key) && !(chat ? kChatFields : kCompletionFields).count(key))
      return refuse(key.substr(0, 64), "unknown field '", key.substr(0, 64), "' for ",
                    chat ? "/v1/chat/completions" : "/v1/completions");
  out.endpoint = endpoint;
  if (!body.contains("model")) return refuse("model", "'model' is required (GET /v1/models lists it)");
  SM_ASSIGN(model, string(refuse, body["model"], "model", kMaxModelNameBytes));
  out.model = std::move(model);

  SM_TRY(neutral(refuse, body, "n", 1, "one choice per request (n = 1)"));
  SM_TRY(neutral(refuse, body, "presence_penalty", 0, "no penalties"));
  SM_TRY(neutral(refuse, body, "frequency_penalty", 0, "no penalties"));
  SM_TRY(neutral(refuse, body, "logit_bias", json::object(), "no logit bias"));
  SM_TRY(neutral(refuse, body, "logprobs", chat ? json(false) : json(0), "no log probabilities"));
  if (auto it = body.find("user"); it != body.end() && !it->is_null())
    SM_TRY(string(refuse, *it, "user", 256).status());
  if (chat) {
    SM_TRY(neutral(refuse, body, "top_logprobs", 0, "no log probabilities"));
    for (const char* f : {"tools", "functions"}) SM_TRY(neutral(refuse, body, f, json::array(), "no tool calls"));
    for (const char* f : {"tool_choice", "function_call"}) SM_TRY(neutral(refuse, body, f, "none", "no tool calls"));
    SM_TRY(neutral(refuse, body, "response_format", json{{"type", "text"}}, "text responses only"));
    if (!body.contains("messages")) return refuse("messages", "'messages' is required");
    SM_TRY(parse_messages(refuse, body["messages"], out.messages));
  } else {
    SM_TRY(neutral(refuse, body, "echo", false, "the prompt is not echoed"));
    SM_TRY(neutral(refuse, body, "best_of", 1, "one candidate per request (best_of = 1)"));
    SM_TRY(neutral(refuse, body, "suffix", "", "no suffix (insertion)"));
    if (!body.contains("prompt")) return refuse("prompt", "'prompt' is required");
    SM_TRY(parse_prompt(refuse, body["prompt"], out));
  }

  if (auto it = body.find("stream"); it != body.end() && !it->is_null()) {
    SM_ASSIGN(b, boolean(refuse, *it, "stream"));
    out.stream = b;
  }
  if (auto it = body.find("stream_options"); it != body.end() && !it->is_null()) {
    if (!out.stream) return refuse("stream_options", "'stream_options' is only allowed with \"stream\": true");
    if (!it->is_object()) return refuse("stream_options", "'stream_options' must be an object");
    for (const auto& [key, value] : it->items()) {
      if (key != "include_usage") return refuse("stream_options", "'stream_options' knows only include_usage");
      SM_ASSIGN(b, boolean(refuse, value, "stream_options.include_usage"));
      out.include_usage = b;
    }
  }

  out.max_tokens = chat ? kDefaultChatTokens : kDefaultCompletionTokens;
  std::optional<int64_t> max_tokens;
  for (const char* f : {"max_tokens", "max_completion_tokens"}) {
    auto it = body.find(f);
    if (it == body.end() || it->is_null()) continue;
    SM_ASSIGN(x, integer(refuse, *it, f, 0, kMaxNewTokens));
    if (max_tokens && *max_tokens != x) return refuse(f, "'max_tokens' and 'max_completion_tokens' disagree");
    max_tokens = x;
  }
  if (max_tokens) out.max_tokens = int(*max_tokens);

  if (auto it = body.find("temperature"); it != body.end() && !it->is_null()) {
    SM_ASSIGN(t, number(refuse, *it, "temperature", 0.0, 2.0, false));
    out.sampling.temperature = float(t);
  }
  if (auto it = body.find("top_p"); it != body.end() && !it->is_null()) {
    SM_ASSIGN(p, number(refuse, *it, "top_p", 0.0, 1.0, true));
    out.sampling.top_p = float(p);
  }
  if (auto it = body.find("seed"); it != body.end() && !it->is_null()) {
    if (it->is_number_unsigned())
      out.sampling.seed = it->get<uint64_t>();
    else {
      SM_ASSIGN(s, integer(refuse, *it, "seed", 0, INT64_MAX));
      out.sampling.seed = uint64_t(s);
    }
  }
  if (auto it = body.find("stop"); it != body.end()) SM_TRY(parse_stop(refuse, *it, out.stop));
  if (auto it = body.find("starmesh"); it != body.end()) SM_TRY(parse_starmesh(refuse, *it, out.starmesh));
  out.sampling.top_k = out.starmesh.top_k;
  return {};
}

}  // namespace

bool json_depth_within(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

Expected<OpenAiRequest> parse_openai_request(Endpoint endpoint, std::string_view body, std::string& bad_param) {
  const Refuse refuse(bad_param);
  bad_param.clear();
  if (!json_depth_within(body, kMaxJsonDepth))
    return refuse("", "the body nests JSON deeper than ", kMaxJsonDepth, " levels");
  const json parsed = json::parse(body, nullptr, false);
  if (parsed.is_discarded()) return refuse("", "the body is not valid JSON");
  if (!parsed.is_object()) return refuse("", "the body must be a JSON object");
  OpenAiRequest out;
  SM_TRY(parse_body(endpoint, parsed, refuse, out));
  return out;
}

Expected<GenerateRequest> to_generate_request(const OpenAiRequest& in, const ChatRenderer& chat,
                                              std::string& bad_param) {
  const Refuse refuse(bad_param);
  bad_param.clear();
  const StarmeshOptions& x = in.starmesh;
  const bool kept = !x.context_id.empty();
  GenerateRequest r;
  r.max_new_tokens = in.max_tokens;
  r.sampling = in.sampling;
  r.block_size = x.block_size;
  r.anchor_size = x.anchor_size;
  r.max_hosts = x.max_hosts;
  r.keep_context = x.keep_context;
  r.context_id = x.context_id;
  r.priority = x.priority;
  if (kept && x.keep_context)
    return refuse("starmesh.keep_context", "keep_context makes a new kept context; this request asks kept context ",
                  x.context_id.hex());
  bool has_context = false;
  if (in.endpoint == Endpoint::chat) {
    if (x.context)
      return refuse("starmesh.context",
                    "chat takes its context from the messages: starmesh.context is for completions");
    if (!chat) return make_error(ErrorCode::not_found, "this model has no chat template: use /v1/completions");
    SM_ASSIGN(text, chat(in.messages));
    r.query_text = std::move(text.query);
    if (!kept) r.context_text = std::move(text.context);
    r.add_bos = false;  // the template writes the BOS token's text itself
    has_context = !r.context_text.empty();
  } else {
    if (kept && x.context)
      return refuse("starmesh.context", "give either starmesh.context or starmesh.context_id, not both");
    r.query_text = in.prompt;
    r.query_ids = in.prompt_ids;
    if (x.context) r.context_text = *x.context;
    has_context = x.context.has_value();
  }
  const bool chat_request = in.endpoint == Endpoint::chat;
  r.mode = x.mode ? *x.mode : (kept || (has_context && !chat_request)) ? AttentionMode::star : AttentionMode::global;
  if (r.mode == AttentionMode::global) {
    if (kept) return refuse("starmesh.mode", "a kept context (starmesh.context_id) is asked in mode star");
    if (x.keep_context) return refuse("starmesh.keep_context", "keep_context needs mode star");
  } else if (!has_context && !kept) {
    return refuse("starmesh.mode", "mode star needs a context: starmesh.context (or starmesh.context_id)");
  }
  return r;
}

}  // namespace starmesh::http
