#pragma once
// The HTTP endpoint Prometheus scrapes: GET /metrics renders a registry; any other path is
// 404, any other method 405. A small HTTP/1.1 server of our own on one thread (one request
// per connection, "Connection: close"): civetweb could not start its threads in our
// processes (its fixed 100 KB stacks are smaller than cuBLASLt's and OpenBLAS's static TLS;
// docs/TRAPS.md).
#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "starmesh/core/expected.hpp"
#include "starmesh/metrics/registry.hpp"

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
  void serve();
  void answer(int fd);
  const Registry& registry_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace starmesh::metrics
