#pragma once
// Plain TCP to 127.0.0.1 for tests: a raw connection (hostile peers), and a minimal HTTP/1.0
// GET for tests that scrape /metrics or ask Prometheus's query API (no client library: the
// server under test is the subject).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <map>
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

// A series "name{a=\"x\",b=\"y\"}" as its name and labels (values unescaped).
struct SeriesKey {
  std::string name;
  std::map<std::string, std::string> labels;
};
inline SeriesKey parse_series(const std::string& text) {
  SeriesKey k;
  const size_t brace = text.find('{');
  k.name = text.substr(0, brace);
  for (size_t at = brace == std::string::npos ? text.size() : brace + 1; at < text.size() && text[at] != '}';) {
    const size_t eq = text.find("=\"", at);
    if (eq == std::string::npos) break;
    std::string value;
    size_t i = eq + 2;
    for (; i < text.size() && text[i] != '"'; ++i) {
      if (text[i] == '\\' && i + 1 < text.size()) {
        ++i;
        value += text[i] == 'n' ? '\n' : text[i];
      } else {
        value += text[i];
      }
    }
    k.labels[text.substr(at, eq - at)] = value;
    at = i + 1 < text.size() && text[i + 1] == ',' ? i + 2 : i + 1;
  }
  return k;
}

// The value of `series` in a Prometheus exposition, matched as PromQL matches a selector:
// the sum of every series of that name that has the labels given (others may be there too);
// NaN when none has.
inline double metric_value(const std::string& exposition, const std::string& series) {
  const SeriesKey want = parse_series(series);
  double sum = 0;
  bool found = false;
  for (size_t at = 0; at < exposition.size();) {
    size_t end = exposition.find('\n', at);
    if (end == std::string::npos) end = exposition.size();
    const std::string line = exposition.substr(at, end - at);
    at = end + 1;
    if (line.empty() || line[0] == '#') continue;
    const size_t close = line.find('{') == std::string::npos ? line.find(' ') : line.find("} ");
    if (close == std::string::npos) continue;
    const size_t space = line[close] == ' ' ? close : close + 1;
    const SeriesKey have = parse_series(line.substr(0, space));
    if (have.name != want.name) continue;
    bool match = true;
    for (const auto& [name, value] : want.labels) {
      auto it = have.labels.find(name);
      match = match && it != have.labels.end() && it->second == value;
    }
    if (!match) continue;
    sum += std::stod(line.substr(space + 1));
    found = true;
  }
  return found ? sum : NAN;
}

}  // namespace starmesh::test
