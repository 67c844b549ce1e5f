#pragma once
// The OpenAI-compatible answers: whole bodies (stream false) and server-sent events
// (`data: {...}\n\n`, ended by `data: [DONE]\n\n`), with usage and the "starmesh" extension
// object (kept context id, token counts, hosts, timings). docs/HTTP.md shows each shape.
#include <cstdint>
#include <string>
#include <string_view>

#include "starmesh/http/openai_request.hpp"
#include "starmesh/service/request.hpp"

namespace starmesh::http {

// What every chunk of one answer repeats.
struct AnswerMeta {
  Endpoint endpoint = Endpoint::completions;
  std::string id;       // "cmpl-..." or "chatcmpl-..."
  int64_t created = 0;  // Unix seconds
  std::string model;
  AttentionMode mode = AttentionMode::global;
};
AnswerMeta new_answer_meta(Endpoint endpoint, std::string model, AttentionMode mode);

// "stop" (end of sequence, or a stop sequence matched) or "length" (max_tokens).
std::string_view finish_reason(const GenerateSummary& summary, bool stop_sequence_matched);

std::string completion_body(const AnswerMeta& meta, const std::string& text, std::string_view finish,
                            const GenerateSummary& summary);

// Server-sent events. Chat streams open with the assistant role; every stream's last chunk
// before [DONE] carries the finish reason and the extension object; with include_usage a
// chunk with no choices and the usage follows it.
std::string sse_role_chunk(const AnswerMeta& meta);
std::string sse_text_chunk(const AnswerMeta& meta, const std::string& text);
std::string sse_final_chunk(const AnswerMeta& meta, std::string_view finish, const GenerateSummary& summary);
std::string sse_usage_chunk(const AnswerMeta& meta, const GenerateSummary& summary);
std::string sse_error(const Error& error);
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

// GET /v1/models and /v1/models/{id}.
std::string models_body(const std::string& model);
std::string model_body(const std::string& model);
// DELETE /v1/starmesh/contexts/{id}: {"id", "object": "starmesh.context", "deleted": true}.
std::string context_deleted_body(const ContextId& id);

}  // namespace starmesh::http
