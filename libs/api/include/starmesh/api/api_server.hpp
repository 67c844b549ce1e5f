#pragma once
// The public API endpoint: serves a generate_service_i over Cap'n Proto RPC
// (schemas/starmesh.capnp) on a thread of its own that runs the kj event loop.
//
// Threads: the service's generate() is called on the loop thread and must not block; its
// callbacks may come from any thread. They never wait for the loop: tokens go into a mailbox
// per request and a cross-thread fulfiller wakes the loop, which pushes them to the client's
// sink. While a push is held back by the stream's flow control, newer tokens are batched into
// the next push (backpressure costs no memory beyond the tokens themselves and never stalls the
// generator). on_tokens returns false once the client has cancelled, disconnected, or the
// server is stopping. A service that drops its callbacks without calling on_done fails the
// request with a message rather than leaving the client waiting.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "starmesh/api/server_info.hpp"
#include "starmesh/core/expected.hpp"
#include "starmesh/service/api_tokens.hpp"  // load_api_tokens: the tokens file every door shares
#include "starmesh/service/generate_service.hpp"

namespace starmesh {

// What the API lets a connection do before it logs in, and how many it serves at once.
struct ApiLimits {
  int max_connections = 1024;                      // more are closed as they come (each holds a file descriptor)
  std::chrono::milliseconds login_timeout{10000};  // a connection not logged in by then is closed
  size_t pre_login_bytes = 64 * 1024;              // bytes a connection may send before login
  int max_pending_logins = 4;                      // failed logins of one connection waiting for their answer
  int max_failed_logins = 16;                      // failed logins one connection may make in all
  std::chrono::milliseconds login_spacing{250};    // failed answers per peer address: one per spacing
};

class ApiServer {
 public:
  // Called on the loop thread for every `info` request: must be quick and thread-safe.
  using InfoFn = std::function<ServerInfo()>;

  // Listens on `address` ("host:port"; port 0 picks a free one) and serves `service`, which
  // must outlive the server, to clients that log in with one of `tokens` (empty: any
  // credentials; see Gateway in schemas/starmesh.capnp). Returns once listening, or the
  // reason it cannot listen.
  static Expected<std::unique_ptr<ApiServer>> start(generate_service_i& service, const std::string& address,
                                                    InfoFn info = {}, std::vector<std::string> tokens = {},
                                                    ApiLimits limits = {});
  ~ApiServer();  // stop()
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  uint16_t port() const;
  // Closes every connection (requests in flight are cancelled: their clients get an error, the
  // service sees on_tokens return false) and joins the loop thread. Idempotent. Not from the
  // loop thread itself (the service's generate() or the info function).
  void stop();
  // Generate calls being served now (for tests and metrics).
  int64_t active_requests() const;
  // Connections open now; connections closed at once for the cap; accept() failures (out of
  // file descriptors, say: the listener waits and tries again).
  int64_t connections() const;
  int64_t refused_connections() const;
  int64_t accept_failures() const;
  // The loop serves (it has not stopped or failed): what /healthz says of the API.
  bool serving() const;

  struct Impl;

 private:
  explicit ApiServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace starmesh
