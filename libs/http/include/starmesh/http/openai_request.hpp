#pragma once
// The OpenAI-compatible request bodies (POST /v1/completions, /v1/chat/completions), parsed
// and bounded before any work, and turned into the service's GenerateRequest. Anything the
// door cannot honour exactly (n > 1, logprobs, penalties, tools, ...) is refused with 400,
// never ignored. docs/HTTP.md is the reference for every field.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "starmesh/core/expected.hpp"
#include "starmesh/core/sampling_params.hpp"
#include "starmesh/service/context_id.hpp"
#include "starmesh/service/request.hpp"

namespace starmesh::http {

enum class Endpoint : uint8_t { completions, chat };

// Bounds on a body beyond its size (the server bounds that).
inline constexpr int kMaxJsonDepth = 16;
inline constexpr size_t kMaxStopSequences = 4;
inline constexpr size_t kMaxStopBytes = 1024;
inline constexpr size_t kMaxMessages = 4096;
inline constexpr size_t kMaxModelNameBytes = 256;
inline constexpr int kDefaultCompletionTokens = 16;  // OpenAI's default for /v1/completions
inline constexpr int kDefaultChatTokens = 256;       // ours for chat (OpenAI: up to the context)

struct ChatTurn {
  std::string role;  // system, user or assistant
  std::string content;
};

// The "starmesh" extension object: Star Attention's parameters and kept contexts.
struct StarmeshOptions {
  std::optional<AttentionMode> mode;  // unset: the rule in to_generate_request
  int64_t block_size = 0;             // 0: the router's --block-size
  int64_t anchor_size = -1;           // -1: = block_size; 0: no anchor
  int max_hosts = 0;                  // 0: every worker
  int top_k = 0;                      // 0: no limit (OpenAI has no top_k)
  bool keep_context = false;
  ContextId context_id;                  // empty: none
  std::optional<std::string> context;    // completions: the phase-1 document
  Priority priority = Priority::normal;  // among this token's own requests
};

struct OpenAiRequest {
  Endpoint endpoint = Endpoint::completions;
  std::string model;
  std::string prompt;               // completions, as text
  std::vector<int32_t> prompt_ids;  // completions, as token ids (wins when given)
  std::vector<ChatTurn> messages;   // chat
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  int max_tokens = 0;
  SamplingParams sampling;
  std::vector<std::string> stop;
  StarmeshOptions starmesh;
};

// Parses and bounds one body. Unknown fields, wrong types and values out of range are refused
// (invalid_argument); `bad_param` then names the field, for the OpenAI error body's "param"
// ("" when none).
Expected<OpenAiRequest> parse_openai_request(Endpoint endpoint, std::string_view body, std::string& bad_param);

// Whether `text` nests JSON arrays and objects at most `max_depth` deep (checked before
// parsing, so a hostile body cannot recurse the parser into the ground).
bool json_depth_within(std::string_view text, int max_depth);

// A chat conversation rendered by the model's template and split where Star Attention wants it:
// `context` is everything before the last user message (phase 1), `query` the rest with the
// generation prompt. The router injects it (the model's chat template lives in libs/model).
struct ChatText {
  std::string context, query;
};
using ChatRenderer = std::function<Expected<ChatText>(const std::vector<ChatTurn>&)>;

// The service request. Which text is phase-1 context and which the query:
//   completions: starmesh.context is the context and `prompt` the query (mode star unless
//     told); without it the whole prompt is the query, in global mode (exact attention, one
//     host); starmesh.context_id asks a kept context (mode star) with `prompt` as the query.
//   chat: the renderer's split; mode global unless starmesh.mode says star; with
//     starmesh.context_id only the query part is sent (the kept context holds the rest).
// `chat` must be set for chat requests. Refusals are invalid_argument (the renderer's own
// errors pass through), with `bad_param` as above.
Expected<GenerateRequest> to_generate_request(const OpenAiRequest& in, const ChatRenderer& chat,
                                              std::string& bad_param);

}  // namespace starmesh::http
