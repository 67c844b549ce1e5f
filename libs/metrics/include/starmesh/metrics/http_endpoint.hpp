#pragma once
// The HTTP endpoint Prometheus scrapes: GET /metrics renders a registry (civetweb serves it
// from its own threads); any other path is 404, any other method 405.
#include <memory>
#include <string>

#include "starmesh/core/expected.hpp"
#include "starmesh/metrics/registry.hpp"

struct mg_context;
struct mg_connection;

namespace starmesh::metrics {

class HttpEndpoint {
 public:
  // Listens on HOST:PORT (port 0: any free one, see port()). The registry must outlive it.
  static Expected<std::unique_ptr<HttpEndpoint>> start(const Registry& registry, const std::string& host_port);
  ~HttpEndpoint();  // stops serving
  HttpEndpoint(const HttpEndpoint&) = delete;
  HttpEndpoint& operator=(const HttpEndpoint&) = delete;

  int port() const { return port_; }

 private:
  explicit HttpEndpoint(const Registry& registry) : registry_(registry) {}
  static int handle(::mg_connection* conn, void* self);
  const Registry& registry_;
  mg_context* ctx_ = nullptr;
  int port_ = 0;
};

}  // namespace starmesh::metrics
