#pragma once
// The router's HTTP door: an OpenAI-compatible API over a generate_service_i, on cpp-httplib
// (a pool of threads; each request holds one while it is answered, a streaming one for its
// whole generation). Routes (docs/HTTP.md):
//   POST   /v1/completions            text completion, stream or not
//   POST   /v1/chat/completions       chat (the model's chat template, injected), stream or not
//   GET    /v1/models, /v1/models/ID  the served model
//   DELETE /v1/starmesh/contexts/ID   drops a kept context
// Every route wants "Authorization: Bearer <API token>" when the router has tokens; the token
// is the tenant, as in the Cap'n Proto login. A client that goes away cancels its generation.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "starmesh/core/expected.hpp"
#include "starmesh/http/openai_request.hpp"
#include "starmesh/service/generate_service.hpp"

namespace starmesh::http {

struct OpenAiServerOptions {
  std::string model;                // the served model's name: GET /v1/models, and "model" must be it
  std::vector<std::string> tokens;  // API tokens; empty: an open door
  ChatRenderer chat;                // empty: chat answers 404 (the model has no chat template)
  size_t max_body_bytes = size_t(8) << 20;
  size_t max_header_bytes = size_t(64) << 10;
  int max_threads = 64;                            // requests answered at once
  int max_connections = 256;                       // connections open (answered or waiting); more get 429 at once
  std::chrono::milliseconds read_deadline{30000};  // a request's headers and body arrive within this
  std::chrono::milliseconds io_timeout{10000};     // each read and write makes progress within this
  std::chrono::milliseconds keep_alive{5000};      // idle kept-alive connections close after this
  std::chrono::milliseconds poll{50};              // how often a waiting answer checks that its client is there
};

class OpenAiServer {
 public:
  // Listens on HOST:PORT (port 0: any free one, see port()) and serves `service`, which must
  // outlive the server. Returns once serving, or why it cannot.
  static Expected<std::unique_ptr<OpenAiServer>> start(generate_service_i& service, const std::string& address,
                                                       OpenAiServerOptions options);
  ~OpenAiServer();  // stop()
  OpenAiServer(const OpenAiServer&) = delete;
  OpenAiServer& operator=(const OpenAiServer&) = delete;

  uint16_t port() const;
  // Stops accepting, cancels the generations in flight (their clients get an error, or a cut
  // stream), and joins the threads. Idempotent.
  void stop();
  bool serving() const;                 // what /healthz says of the door
  int64_t active_requests() const;      // generations being answered now
  int64_t connections() const;          // connections open now
  int64_t refused_connections() const;  // closed at once for the cap
  int64_t disconnects() const;          // generations cancelled because their client went away

  struct Impl;

 private:
  explicit OpenAiServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace starmesh::http
