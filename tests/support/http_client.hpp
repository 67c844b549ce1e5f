#pragma once
// Plain TCP to 127.0.0.1 for tests: a raw connection (hostile peers), and a minimal HTTP/1.0
// GET for tests that scrape /metrics or ask Prometheus's query API (no client library: the
// server under test is the subject).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <string>

namespace starmesh::test {

// 127.0.0.1:port as a socket address.
inline sockaddr_in loopback_address(uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

// A TCP connection to 127.0.0.1:port; -1 when it fails.
inline int connect_loopback(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  const sockaddr_in addr = loopback_address(port);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) return fd;
  ::close(fd);
  return -1;
}

struct HttpResponse {
  int status = 0;  // 0: no connection
  std::string body;
};

inline HttpResponse http_get(int port, const std::string& path, const std::string& method = "GET") {
  HttpResponse r;
  const int fd = connect_loopback(uint16_t(port));
  if (fd < 0) return r;
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  // A method with a body says how long it is (none here), as HTTP asks.
  const std::string length = method == "GET" || method == "HEAD" ? "" : "Content-Length: 0\r\n";
  const std::string req = method + " " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n" + length + "\r\n";
  if (::send(fd, req.data(), req.size(), 0) != ssize_t(req.size())) {
    ::close(fd);
    return r;
  }
  std::string raw;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) raw.append(buf, size_t(n));
  ::close(fd);
  const auto sp = raw.find(' ');
  if (raw.rfind("HTTP/", 0) != 0 || sp == std::string::npos) return r;
  r.status = std::atoi(raw.c_str() + sp + 1);
  const auto end = raw.find("\r\n\r\n");
  if (end != std::string::npos) r.body = raw.substr(end + 4);
  return r;
}

// A port nobody listens on now (bound and released: a small race, fine on loopback in tests).
inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// The value of one series ("name{labels}") in a Prometheus exposition; NaN when absent.
inline double metric_value(const std::string& exposition, const std::string& series) {
  const std::string key = series + " ";
  for (size_t at = 0; (at = exposition.find(key, at)) != std::string::npos; ++at)
    if (at == 0 || exposition[at - 1] == '\n') return std::stod(exposition.substr(at + key.size()));
  return NAN;
}

}  // namespace starmesh::test
