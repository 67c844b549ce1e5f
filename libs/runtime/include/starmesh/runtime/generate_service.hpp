#pragma once
// What the public API asks of the system: one generate request, tokens streamed back in
// chunks, then a summary or an error. The router implements it over the mesh; the API layer
// (Cap'n Proto) calls it and knows nothing of actors.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "starmesh/core/expected.hpp"
#include "starmesh/model/sampler.hpp"

namespace starmesh {

struct GenerateRequest {
  // Text or token ids (ids win when given). The context may be empty in global mode.
  std::string context_text, query_text;
  std::vector<int32_t> context_ids, query_ids;
  bool add_bos = true;
  std::string mode = "star";  // "star" or "global"
  int64_t block_size = 0;     // 0: the server's default
  int64_t anchor_size = -1;   // -1: = block_size; 0: no anchor
  int max_hosts = 0;          // 0: every available worker
  int max_new_tokens = 64;
  SamplingParams sampling;
  // Encode once, ask many times: keep_context keeps the context's KV on its workers after
  // this request (the summary names it); context_id asks a new query over a kept context
  // (give no context then). Kept contexts go when KV is needed for other work, oldest first.
  bool keep_context = false;
  uint64_t context_id = 0;
};

struct TokenChunk {
  std::vector<int32_t> ids;
  std::string text;  // the decoded text of these ids (UTF-8 complete)
};

struct GenerateSummary {
  int64_t context_tokens = 0, query_tokens = 0, generated_tokens = 0;
  int hosts = 0;
  double phase1_seconds = 0, phase2_prefill_seconds = 0, decode_seconds = 0;
  std::string stop_reason;  // "eos", "max_tokens", "cancelled"
  uint64_t context_id = 0;  // the kept context this request made or used (0: none)
};

class generate_service_i {
 public:
  virtual ~generate_service_i() = default;
  // Non-blocking. on_tokens may be called from any thread, in order; returning false cancels.
  // on_done is called exactly once, after the last on_tokens, with the summary or the error.
  virtual void generate(GenerateRequest request, std::function<bool(const TokenChunk&)> on_tokens,
                        std::function<void(Expected<GenerateSummary>)> on_done) = 0;
  // Frees a kept context (once the requests asking it end). Non-blocking; unknown ids are
  // ignored (it may have been dropped to make room already). A service that keeps no
  // contexts refuses.
  virtual Status drop_context(uint64_t context_id) = 0;
};

}  // namespace starmesh
