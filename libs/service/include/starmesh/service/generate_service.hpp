#pragma once
// What the public API asks of the system: one generate request, tokens streamed back in
// chunks, then a summary or an error (with a code: starmesh/core/error_code.hpp). The router
// implements it over the mesh (MeshClient); the API layer (Cap'n Proto) calls it and knows
// nothing of actors.
#include <functional>

#include "starmesh/core/expected.hpp"
#include "starmesh/service/request.hpp"

namespace starmesh {

class generate_service_i {
 public:
  virtual ~generate_service_i() = default;
  // Non-blocking. on_tokens may be called from any thread, in order; returning false cancels.
  // on_done is called exactly once, after the last on_tokens, with the summary or the error.
  virtual void generate(GenerateRequest request, std::function<bool(const TokenChunk&)> on_tokens,
                        std::function<void(Expected<GenerateSummary>)> on_done) = 0;
  // Frees a kept context of `tenant` (once the requests asking it end). Non-blocking:
  // on_done (any thread, once) gets ok, or not_found when no such context belongs to the
  // tenant (it may have been dropped to make room already). A service that keeps no contexts
  // refuses.
  virtual void drop_context(ContextId id, std::string tenant, std::function<void(Status)> on_done) = 0;
};

}  // namespace starmesh
