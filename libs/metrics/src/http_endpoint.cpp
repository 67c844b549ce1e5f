#include "starmesh/metrics/http_endpoint.hpp"

#include <httplib.h>

#include <thread>

namespace starmesh::metrics {

struct HttpEndpoint::Impl {
  httplib::Server server;
  std::thread thread;
};

namespace {

void answer_check(const std::function<Status()>& check, httplib::Response& res) {
  const Status s = check();
  res.status = s ? 200 : 503;
  res.set_content(s ? "ok\n" : s.message() + "\n", "text/plain");
}

}  // namespace

Expected<std::unique_ptr<HttpEndpoint>> HttpEndpoint::start(const Registry& registry, const std::string& host_port,
                                                            HealthChecks health, HttpLimits limits) {
  const auto colon = host_port.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == host_port.size())
    return make_error(ErrorCode::invalid_argument, "metrics endpoint: '", host_port, "' is not HOST:PORT");
  const std::string host = host_port.substr(0, colon);
  int port = -1;
  try {
    size_t used = 0;
    port = std::stoi(host_port.substr(colon + 1), &used);
    if (used != host_port.size() - colon - 1) port = -1;
  } catch (const std::exception&) {
  }
  if (port < 0 || port > 65535)
    return make_error(ErrorCode::invalid_argument, "metrics endpoint: '", host_port, "': the port must be 0 to 65535");

  auto impl = std::make_unique<Impl>();
  httplib::Server& s = impl->server;
  s.set_read_timeout(limits.read_timeout);
  s.set_write_timeout(limits.write_timeout);
  s.set_keep_alive_timeout(std::chrono::duration_cast<std::chrono::seconds>(limits.keep_alive).count());
  s.set_payload_max_length(limits.max_request_bytes);
  // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, which lets a second process bind
  // the same port and take half its connections instead of failing.
  s.set_socket_options([](socket_t sock) {
    const int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  s.Get("/metrics", [&registry](const httplib::Request&, httplib::Response& res) {
    res.set_content(registry.expose(), "text/plain; version=0.0.4; charset=utf-8");
  });
  s.Get("/healthz", [live = health.live](const httplib::Request&, httplib::Response& res) { answer_check(live, res); });
  s.Get("/readyz",
        [ready = health.ready](const httplib::Request&, httplib::Response& res) { answer_check(ready, res); });
  auto known = [](const std::string& path) { return path == "/metrics" || path == "/healthz" || path == "/readyz"; };
  auto refuse = [known](const httplib::Request& req, httplib::Response& res) {
    res.status = known(req.path) ? 405 : 404;
    res.set_content(known(req.path) ? "only GET\n" : "not found: /metrics, /healthz, /readyz\n", "text/plain");
  };
  s.Post(".*", refuse);
  s.Put(".*", refuse);
  s.Delete(".*", refuse);
  s.Patch(".*", refuse);
  s.set_error_handler([known](const httplib::Request& req, httplib::Response& res) {
    if (res.status == 404 && !known(req.path))
      res.set_content("not found: /metrics, /healthz, /readyz\n", "text/plain");
  });
  const int bound = port == 0 ? s.bind_to_any_port(host) : (s.bind_to_port(host, port) ? port : -1);
  if (bound <= 0)
    return make_error(ErrorCode::unavailable, "metrics endpoint: cannot listen on ", host_port,
                      " (taken, or not an address of this machine)");
  impl->thread = std::thread([srv = &impl->server] { srv->listen_after_bind(); });
  // Returns once the server loop runs: a stop() before that would be missed by the loop, and
  // the destructor would wait for it forever.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!impl->server.is_running() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (!impl->server.is_running()) {
    impl->server.stop();
    impl->thread.join();
    return make_error(ErrorCode::internal, "metrics endpoint on ", host_port, ": the server loop did not start");
  }
  std::unique_ptr<HttpEndpoint> ep(new HttpEndpoint(std::move(impl)));
  ep->port_ = bound;
  return ep;
}

HttpEndpoint::HttpEndpoint(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpEndpoint::~HttpEndpoint() {
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace starmesh::metrics
