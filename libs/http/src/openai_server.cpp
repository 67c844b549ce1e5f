// OpenAiServer: the routes, authentication, and the server's life (start, stop).
#include "starmesh/http/openai_server.hpp"

#include <future>

#include "door.hpp"
#include "starmesh/http/openai_errors.hpp"
#include "starmesh/http/openai_response.hpp"

namespace starmesh::http {
namespace {

ConnectionLimits connection_limits(const OpenAiServerOptions& o) {
  ConnectionLimits l;
  l.max_threads = o.max_threads;
  l.max_connections = o.max_connections;
  l.max_request_bytes = o.max_header_bytes + o.max_body_bytes;
  l.read_deadline = o.read_deadline;
  l.io_timeout = o.io_timeout;
  l.keep_alive = o.keep_alive;
  return l;
}

const char* kJson = "application/json";

// The routes and their methods, for 404 (no such route) versus 405 (wrong method).
bool known_route(const std::string& path) {
  return path == "/v1/completions" || path == "/v1/chat/completions" || path == "/v1/models" ||
         path.rfind("/v1/models/", 0) == 0 || path.rfind("/v1/starmesh/contexts/", 0) == 0;
}

}  // namespace

OpenAiServer::Impl::Impl(generate_service_i& s, OpenAiServerOptions o)
    : service(s), options(std::move(o)), auth(options.tokens), server(connection_limits(options)) {}

void answer_error(httplib::Response& res, const Error& error, std::string_view param) {
  res.status = http_status(error.code);
  if (error.code == ErrorCode::overloaded) res.set_header("Retry-After", "1");
  res.set_content(error_body(error, param), kJson);
}

Expected<std::string> OpenAiServer::Impl::authenticate(const httplib::Request& req, httplib::Response& res) {
  auto tenant = auth.check(req.remote_addr, req.get_header_value("Authorization"), BearerAuth::Clock::now());
  if (!tenant) {
    answer_error(res, tenant.error());
    if (tenant.code() == ErrorCode::unauthenticated) res.set_header("WWW-Authenticate", "Bearer");
  }
  return tenant;
}

Expected<std::unique_ptr<OpenAiServer>> OpenAiServer::start(generate_service_i& service, const std::string& address,
                                                            OpenAiServerOptions options) {
  const auto colon = address.rfind(':');
  int port = -1;
  if (colon != std::string::npos && colon > 0 && colon + 1 < address.size()) {
    port = 0;
    for (size_t i = colon + 1; i < address.size() && port <= 65535; ++i)
      port = std::isdigit(static_cast<unsigned char>(address[i])) ? port * 10 + (address[i] - '0') : 65536;
  }
  if (port < 0 || port > 65535)
    return make_error(ErrorCode::invalid_argument, "HTTP door: '", address, "' is not HOST:PORT (port 0 to 65535)");
  if (options.max_threads < 1 || options.max_connections < options.max_threads)
    return make_error(ErrorCode::invalid_argument, "HTTP door: max_connections (", options.max_connections,
                      ") must be at least max_threads (", options.max_threads, ") >= 1");
  const std::string host = address.substr(0, colon);

  auto impl = std::make_unique<Impl>(service, std::move(options));
  Impl& d = *impl;
  ConnectionServer& s = d.server;
  s.set_payload_max_length(d.options.max_body_bytes);
  s.set_socket_options([](socket_t sock) {  // not SO_REUSEPORT: a second router must fail to bind
    const int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  s.Post("/v1/completions",
         [&d](const httplib::Request& req, httplib::Response& res) { d.generate(Endpoint::completions, req, res); });
  s.Post("/v1/chat/completions",
         [&d](const httplib::Request& req, httplib::Response& res) { d.generate(Endpoint::chat, req, res); });
  s.Get("/v1/models", [&d](const httplib::Request& req, httplib::Response& res) {
    if (d.authenticate(req, res)) res.set_content(models_body(d.options.model), kJson);
  });
  s.Get("/v1/models/(.+)", [&d](const httplib::Request& req, httplib::Response& res) {
    if (!d.authenticate(req, res)) return;
    if (req.matches[1] == d.options.model)
      res.set_content(model_body(d.options.model), kJson);
    else
      answer_error(res, make_error(ErrorCode::not_found, "no model '", req.matches[1].str().substr(0, 256),
                                   "' here: this router serves '", d.options.model, "'"));
  });
  s.Delete("/v1/starmesh/contexts/(.+)", [&d](const httplib::Request& req, httplib::Response& res) {
    auto tenant = d.authenticate(req, res);
    if (!tenant) return;
    auto id = ContextId::parse(req.matches[1].str());
    if (!id) return answer_error(res, id.error(), "context_id");
    // Shared: the service may answer after this handler gave up waiting.
    auto answered = std::make_shared<std::promise<Status>>();
    auto done = answered->get_future();
    d.service.drop_context(*id, *tenant, [answered](Status st) { answered->set_value(std::move(st)); });
    if (done.wait_for(d.options.io_timeout) != std::future_status::ready)
      return answer_error(res, make_error(ErrorCode::timeout, "the router did not answer the drop in time"));
    const Status st = done.get();
    if (!st) return answer_error(res, st.error(), "context_id");
    res.set_content(context_deleted_body(*id), kJson);
  });
  auto refuse = [](const httplib::Request& req, httplib::Response& res) {
    if (known_route(req.path))
      answer_error(res,
                   make_error(ErrorCode::invalid_argument, "method ", req.method, " is not allowed on ", req.path));
    else
      answer_error(res, make_error(ErrorCode::not_found, "no route ", req.method, " ", req.path.substr(0, 256)));
    if (known_route(req.path)) res.status = 405;
  };
  s.Get(".*", refuse);
  s.Post(".*", refuse);
  s.Put(".*", refuse);
  s.Delete(".*", refuse);
  s.Patch(".*", refuse);
  // httplib's own refusals (413 body too large, 400 unreadable request, 404): OpenAI bodies too.
  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    const ErrorCode code = res.status == 404 ? ErrorCode::not_found : ErrorCode::invalid_argument;
    const int status = res.status;
    answer_error(
        res, make_error(code, status == 413   ? "the request body is too large for this server"
                              : status == 404 ? "no route " + req.method + " " + req.path.substr(0, 256)
                                              : "the request could not be read (HTTP " + std::to_string(status) + ")"));
    res.status = status;
  });

  const int bound = port == 0 ? s.bind_to_any_port(host) : (s.bind_to_port(host, port) ? port : -1);
  if (bound <= 0)
    return make_error(ErrorCode::unavailable, "HTTP door: cannot listen on ", address,
                      " (taken, or not an address of this machine)");
  d.port = bound;
  d.thread = std::thread([&s] { s.listen_after_bind(); });
  // Returns once the loop runs: a stop() before that would be missed, and the join hang.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!s.is_running() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (!s.is_running()) {
    s.stop();
    d.thread.join();
    return make_error(ErrorCode::internal, "HTTP door on ", address, ": the server loop did not start");
  }
  return std::unique_ptr<OpenAiServer>(new OpenAiServer(std::move(impl)));
}

OpenAiServer::OpenAiServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OpenAiServer::~OpenAiServer() { stop(); }

void OpenAiServer::stop() {
  // Handlers waiting on a generation see stopping() and cancel it; then the pool is joined.
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

uint16_t OpenAiServer::port() const { return uint16_t(impl_->port); }
bool OpenAiServer::serving() const { return impl_->server.is_running(); }
int64_t OpenAiServer::active_requests() const { return impl_->active.load(); }
int64_t OpenAiServer::connections() const { return impl_->server.connections(); }
int64_t OpenAiServer::refused_connections() const { return impl_->server.refused_connections(); }
int64_t OpenAiServer::disconnects() const { return impl_->disconnects.load(); }

}  // namespace starmesh::http
