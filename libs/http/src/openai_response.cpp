#include "starmesh/http/openai_response.hpp"

#include <chrono>
#include <nlohmann/json.hpp>

#include "starmesh/http/openai_errors.hpp"

namespace starmesh::http {
namespace {

using nlohmann::json;

// Generated text is UTF-8 complete, but a dump must never throw on a stray byte.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }
std::string event(const json& j) { return "data: " + dump(j) + "\n\n"; }

json usage(const GenerateSummary& s) {
  // The prompt is everything this answer attended to: the (kept) context and the query.
  const int64_t prompt = s.context_tokens + s.query_tokens;
  return {{"prompt_tokens", prompt},
          {"completion_tokens", s.generated_tokens},
          {"total_tokens", prompt + s.generated_tokens}};
}

json extension(const AnswerMeta& meta, const GenerateSummary& s) {
  return {{"context_id", s.context_id.empty() ? json() : json(s.context_id.hex())},
          {"mode", to_string(meta.mode)},
          {"context_tokens", s.context_tokens},
          {"query_tokens", s.query_tokens},
          {"hosts", s.hosts},
          {"phase1_seconds", s.phase1_seconds},
          {"decode_seconds", s.decode_seconds}};
}

json head(const AnswerMeta& meta, bool chunk) {
  const bool chat = meta.endpoint == Endpoint::chat;
  return {{"id", meta.id},
          {"object", chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion"},
          {"created", meta.created},
          {"model", meta.model}};
}

json choice(const AnswerMeta& meta, const json& content, std::string_view finish, bool chunk) {
  json c = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish.empty() ? json() : json(finish)}};
  if (meta.endpoint == Endpoint::completions)
    c["text"] = content.is_null() ? json("") : content;
  else if (chunk)
    c["delta"] = content.is_null() ? json::object() : json{{"content", content}};
  else
    c["message"] = {{"role", "assistant"}, {"content", content}};
  return c;
}

}  // namespace

AnswerMeta new_answer_meta(Endpoint endpoint, std::string model, AttentionMode mode) {
  AnswerMeta m;
  m.endpoint = endpoint;
  m.id = (endpoint == Endpoint::chat ? "chatcmpl-" : "cmpl-") + ContextId::random().hex();
  m.created =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  m.model = std::move(model);
  m.mode = mode;
  return m;
}

std::string_view finish_reason(const GenerateSummary& summary, bool stop_sequence_matched) {
  if (stop_sequence_matched) return "stop";
  return summary.stop_reason == StopReason::max_tokens ? "length" : "stop";
}

std::string completion_body(const AnswerMeta& meta, const std::string& text, std::string_view finish,
                            const GenerateSummary& summary) {
  json body = head(meta, false);
  body["choices"] = json::array({choice(meta, text, finish, false)});
  body["usage"] = usage(summary);
  body["starmesh"] = extension(meta, summary);
  return dump(body);
}

std::string sse_role_chunk(const AnswerMeta& meta) {
  json body = head(meta, true);
  json c = choice(meta, "", "", true);
  c["delta"] = {{"role", "assistant"}, {"content", ""}};
  body["choices"] = json::array({c});
  return event(body);
}

std::string sse_text_chunk(const AnswerMeta& meta, const std::string& text) {
  json body = head(meta, true);
  body["choices"] = json::array({choice(meta, text, "", true)});
  return event(body);
}

std::string sse_final_chunk(const AnswerMeta& meta, std::string_view finish, const GenerateSummary& summary) {
  json body = head(meta, true);
  body["choices"] = json::array({choice(meta, nullptr, finish, true)});
  body["starmesh"] = extension(meta, summary);
  return event(body);
}

std::string sse_usage_chunk(const AnswerMeta& meta, const GenerateSummary& summary) {
  json body = head(meta, true);
  body["choices"] = json::array();
  body["usage"] = usage(summary);
  return event(body);
}

std::string sse_error(const Error& error) { return "data: " + error_body(error) + "\n\n"; }

std::string model_body(const std::string& model) {
  return dump({{"id", model}, {"object", "model"}, {"created", 0}, {"owned_by", "starmesh"}});
}

std::string models_body(const std::string& model) {
  return dump({{"object", "list"}, {"data", json::array({json::parse(model_body(model))})}});
}

std::string context_deleted_body(const ContextId& id) {
  return dump({{"id", id.hex()}, {"object", "starmesh.context"}, {"deleted", true}});
}

}  // namespace starmesh::http
