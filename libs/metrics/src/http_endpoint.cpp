#include "starmesh/metrics/http_endpoint.hpp"

#include <civetweb.h>

#include <cstring>
#include <mutex>

namespace starmesh::metrics {

Expected<std::unique_ptr<HttpEndpoint>> HttpEndpoint::start(const Registry& registry, const std::string& host_port) {
  static std::once_flag init;
  std::call_once(init, [] { mg_init_library(0); });
  const auto colon = host_port.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == host_port.size())
    return make_error("metrics endpoint: '", host_port, "' is not HOST:PORT");
  std::unique_ptr<HttpEndpoint> ep(new HttpEndpoint(registry));
  const char* options[] = {"listening_ports", host_port.c_str(), "num_threads", "2", nullptr};
  mg_callbacks callbacks;
  std::memset(&callbacks, 0, sizeof callbacks);
  ep->ctx_ = mg_start(&callbacks, nullptr, options);
  if (!ep->ctx_) return make_error("metrics endpoint: cannot listen on ", host_port, " (in use, or not an address here)");
  mg_set_request_handler(ep->ctx_, "/", &HttpEndpoint::handle, ep.get());
  mg_server_port ports[4];
  const int n = mg_get_server_ports(ep->ctx_, 4, ports);
  if (n < 1) return make_error("metrics endpoint: no port after listening on ", host_port);
  ep->port_ = ports[0].port;
  return ep;
}

HttpEndpoint::~HttpEndpoint() {
  if (ctx_) mg_stop(ctx_);
}

int HttpEndpoint::handle(mg_connection* conn, void* self) {
  const mg_request_info* req = mg_get_request_info(conn);
  const std::string uri = req->local_uri ? req->local_uri : "";
  if (uri != "/metrics") {
    mg_send_http_error(conn, 404, "%s", "not found: the metrics are at /metrics\n");
    return 404;
  }
  if (std::strcmp(req->request_method, "GET") != 0 && std::strcmp(req->request_method, "HEAD") != 0) {
    mg_send_http_error(conn, 405, "%s", "only GET\n");
    return 405;
  }
  const std::string body = static_cast<HttpEndpoint*>(self)->registry_.expose();
  mg_send_http_ok(conn, "text/plain; version=0.0.4; charset=utf-8", (long long)body.size());
  if (std::strcmp(req->request_method, "GET") == 0) mg_write(conn, body.data(), body.size());
  return 200;
}

}  // namespace starmesh::metrics
