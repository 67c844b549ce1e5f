#pragma once
// The operators' HTTP endpoint: GET /metrics renders a registry (Prometheus), GET /healthz
// says whether the process is alive (its main actor runs), GET /readyz whether it can serve
// (a router with workers, a worker registered with a router); 200 or 503 with a line saying
// why. Any other path is 404, any other method 405. cpp-httplib (Debian's libcpp-httplib)
// serves it from a pool of threads with read and write deadlines, so idle or slow clients do
// not hold up a scrape or a probe. (civetweb could not start its threads in our processes:
// docs/TRAPS.md.)
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "starmesh/core/expected.hpp"
#include "starmesh/metrics/registry.hpp"

namespace starmesh::metrics {

// The answers of /healthz and /readyz: ok, or the reason why not. Called on the server's
// threads: thread-safe, quick.
struct HealthChecks {
  std::function<Status()> live = [] { return Status{}; };
  std::function<Status()> ready = [] { return Status{}; };
};

struct HttpLimits {
  std::chrono::milliseconds read_timeout{2000}, write_timeout{2000};  // per request
  std::chrono::milliseconds keep_alive{5000};  // an idle kept-alive connection is closed after this
  size_t max_request_bytes = 64 << 10;         // body; a scrape or probe sends none
};

class HttpEndpoint {
 public:
  // Listens on HOST:PORT (port 0: any free one, see port()). The registry must outlive it.
  static Expected<std::unique_ptr<HttpEndpoint>> start(const Registry& registry, const std::string& host_port,
                                                       HealthChecks health = {}, HttpLimits limits = {});
  ~HttpEndpoint();  // stops serving
  HttpEndpoint(const HttpEndpoint&) = delete;
  HttpEndpoint& operator=(const HttpEndpoint&) = delete;

  int port() const { return port_; }

  struct Impl;

 private:
  explicit HttpEndpoint(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace starmesh::metrics
