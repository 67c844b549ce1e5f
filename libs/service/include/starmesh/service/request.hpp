#pragma once
// The service contract's data: one generate request, the chunks of tokens streamed back, and
// the summary at the end. Plain structs over core only: API clients and servers see these and
// nothing of the mesh (CAF) or the compute stack.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "starmesh/core/sampling_params.hpp"
#include "starmesh/service/cancel_token.hpp"
#include "starmesh/service/context_id.hpp"

namespace starmesh {

// How the context is encoded. Closed set: the schema's Mode enum mirrors it.
enum class AttentionMode : uint8_t {
  star,    // blockwise with an anchor (phase 1), exact attention for query and output (phase 2)
  global,  // plain global attention over context + query (reference, short contexts)
};

// Why generation stopped. Closed set: the schema's StopReason enum mirrors it.
enum class StopReason : uint8_t {
  eos,         // the model produced an end-of-sequence token
  max_tokens,  // max_new_tokens were generated
  cancelled,   // the client cancelled (or disconnected)
};

// Where a running request is, for clients that show progress (long contexts take a while
// before the first token). Closed set: the schema's ProgressStage enum mirrors it.
enum class ProgressStage : uint8_t {
  queued,    // accepted (it has its id), waiting to be placed on workers with free KV
  encoding,  // phase 1: blocks_done of blocks_total context blocks encoded, over every host
  prefill,   // phase 2: the query host runs the query (the first token follows)
};

struct Progress {
  ProgressStage stage = ProgressStage::queued;
  uint64_t request_id = 0;  // the router's id for the request (in its logs too)
  int64_t blocks_done = 0, blocks_total = 0;
  int32_t hosts = 0;  // encoding, prefill: hosts holding the context
};

// How a request ranks among its own tenant's: a tenant's higher ones are queued and encoded
// before its lower ones. It never outranks another tenant's requests (tenants take turns), so
// a client cannot buy precedence over others by asking for it.
enum class Priority : uint8_t { low, normal, high };

std::string_view to_string(AttentionMode mode);
std::string_view to_string(Priority priority);
std::optional<Priority> priority_from_string(std::string_view text);  // "low", "normal", "high"
std::string_view to_string(StopReason reason);
std::string_view to_string(ProgressStage stage);
std::optional<AttentionMode> attention_mode_from_string(std::string_view text);  // "star", "global"
std::optional<StopReason> stop_reason_from_string(std::string_view text);

// Bounds every server enforces on a request before any work (the block plan's own bounds,
// kMaxContextTokens and kMaxHosts, are in libs/attention/block_plan.hpp).
inline constexpr int kMaxNewTokens = 1 << 20;
inline constexpr int64_t kMaxQueryTokens = int64_t(1) << 20;
inline constexpr size_t kMaxTextBytes = size_t(1) << 27;  // 128 MiB of context or query text

struct GenerateRequest {
  // Text or token ids (ids win when given). The context may be empty in global mode.
  std::string context_text, query_text;
  std::vector<int32_t> context_ids, query_ids;
  bool add_bos = true;
  AttentionMode mode = AttentionMode::star;
  int64_t block_size = 0;    // 0: the server's default
  int64_t anchor_size = -1;  // -1: = block_size; 0: no anchor
  int max_hosts = 0;         // 0: every available worker
  int max_new_tokens = 64;
  SamplingParams sampling;
  // Encode once, ask many times: keep_context keeps the context's KV on its workers after
  // this request (the summary names it); context_id asks a new query over a kept context
  // (give no context then). Kept contexts go when KV is needed for other work, oldest first.
  bool keep_context = false;
  ContextId context_id;                  // empty: none
  Priority priority = Priority::normal;  // among this tenant's own requests
  // Who asks (set by the door from the login, never taken from a client): a kept context
  // answers only the tenant that kept it. Empty: an API without tokens (one tenant).
  std::string tenant;
  // Set by the door (in process, never from a wire): cancelled when the client goes away, so
  // the service stops the request before it would notice by itself (its first token).
  std::shared_ptr<CancelToken> cancel;
  // Set by the door (in process, never from a wire) when its client asked for progress events:
  // called in order, on any thread, before the tokens they precede. Empty: none are sent.
  std::function<void(const Progress&)> on_progress;
};

struct TokenChunk {
  std::vector<int32_t> ids;
  std::string text;  // the decoded text of these ids (UTF-8 complete)
};

struct GenerateSummary {
  int64_t context_tokens = 0, query_tokens = 0, generated_tokens = 0;
  int hosts = 0;
  double phase1_seconds = 0, phase2_prefill_seconds = 0, decode_seconds = 0;
  // The slowest host's own phase 1, as it timed it to its device's end (phase1_seconds is
  // the router's wall clock from the orders out to the last report in).
  double phase1_max_host_seconds = 0;
  StopReason stop_reason = StopReason::max_tokens;
  ContextId context_id;     // the kept context this request made or used (empty: none)
  uint64_t request_id = 0;  // the router's id for the request (its log lines name it)
};

}  // namespace starmesh
