#pragma once
// The client side of the public API (schemas/starmesh.capnp) over Cap'n Proto RPC.
//
// Threads: an ApiClient runs a kj event loop on the thread that connected it, and must be used
// and destroyed on that thread (calls from another thread are refused with an error). Each
// thread may hold its own clients. Calls block the calling thread; on_tokens runs on it too.
#include <functional>
#include <memory>
#include <string>

#include "starmesh/api/server_info.hpp"
#include "starmesh/core/expected.hpp"
#include "starmesh/service/generate_service.hpp"

namespace starmesh {

class ApiClient {
 public:
  // Connects to "host:port" and logs in with `credentials` (an API token of that router;
  // any text for an open router). Refusals come back as the server's message.
  static Expected<std::unique_ptr<ApiClient>> connect(const std::string& address, const std::string& credentials = {});
  ~ApiClient();
  ApiClient(const ApiClient&) = delete;
  ApiClient& operator=(const ApiClient&) = delete;

  // Runs one request; on_tokens gets the generated tokens in order, in chunks. Returning false
  // cancels: the server stops the request and the summary says "cancelled" (unless it had
  // already finished). A refusal or a failure comes back as the server's message.
  // on_progress (if set) asks for progress events (queued, phase-1 blocks, prefill), which
  // arrive in order before the tokens; request.on_progress is not used here.
  Expected<GenerateSummary> generate(const GenerateRequest& request,
                                     const std::function<bool(const TokenChunk&)>& on_tokens,
                                     const std::function<void(const Progress&)>& on_progress = {});

  Expected<ServerInfo> info();
  // Frees a context kept by an earlier request's keep_context.
  Status drop_context(const ContextId& id);

  const std::string& address() const;

  struct Impl;

 private:
  explicit ApiClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace starmesh
