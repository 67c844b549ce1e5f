#include "starmesh/metrics/http_endpoint.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace starmesh::metrics {
namespace {

void send_all(int fd, const std::string& data) {
  for (size_t sent = 0; sent < data.size();) {
    const ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return;  // the client went away: nothing to tell it
    sent += size_t(n);
  }
}

std::string response(int status, const char* reason, const std::string& type, const std::string& body, bool with_body) {
  return "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\nContent-Type: " + type +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" +
         (with_body ? body : std::string());
}

}  // namespace

Expected<std::unique_ptr<HttpEndpoint>> HttpEndpoint::start(const Registry& registry, const std::string& host_port) {
  const auto colon = host_port.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == host_port.size())
    return make_error("metrics endpoint: '", host_port, "' is not HOST:PORT");
  const std::string host = host_port.substr(0, colon), port = host_port.substr(colon + 1);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0)
    return make_error("metrics endpoint: cannot listen on ", host_port, ": ", ::gai_strerror(rc));
  std::unique_ptr<HttpEndpoint> ep(new HttpEndpoint(registry));
  std::string why = "no address";
  for (addrinfo* a = found; a && ep->listen_fd_ < 0; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 16) == 0) {
      ep->listen_fd_ = fd;
    } else {
      why = std::strerror(errno);
      ::close(fd);
    }
  }
  ::freeaddrinfo(found);
  if (ep->listen_fd_ < 0) return make_error("metrics endpoint: cannot listen on ", host_port, ": ", why);
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  ::getsockname(ep->listen_fd_, reinterpret_cast<sockaddr*>(&bound), &len);
  ep->port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  ep->thread_ = std::thread([p = ep.get()] { p->serve(); });
  return ep;
}

HttpEndpoint::~HttpEndpoint() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
}

void HttpEndpoint::serve() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;  // wakes up to notice stop_
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    answer(fd);
    ::close(fd);
  }
}

void HttpEndpoint::answer(int fd) {
  // The request head, within 2 s and 8 KB (a scrape sends a few hundred bytes).
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string head;
  char buf[1024];
  while (head.find("\r\n\r\n") == std::string::npos && head.size() < 8192) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    head.append(buf, size_t(n));
  }
  const auto sp1 = head.find(' '), sp2 = head.find(' ', sp1 == std::string::npos ? 0 : sp1 + 1);
  if (sp1 == std::string::npos || sp2 == std::string::npos) {
    send_all(fd, response(400, "Bad Request", "text/plain", "not an HTTP request\n", true));
    return;
  }
  const std::string method = head.substr(0, sp1);
  std::string path = head.substr(sp1 + 1, sp2 - sp1 - 1);
  path = path.substr(0, path.find('?'));
  if (path != "/metrics") {
    send_all(fd, response(404, "Not Found", "text/plain", "not found: the metrics are at /metrics\n", true));
  } else if (method != "GET" && method != "HEAD") {
    send_all(fd, response(405, "Method Not Allowed", "text/plain", "only GET\n", true));
  } else {
    send_all(fd, response(200, "OK", "text/plain; version=0.0.4; charset=utf-8", registry_.expose(), method == "GET"));
  }
}

}  // namespace starmesh::metrics
