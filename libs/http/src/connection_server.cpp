#include "connection_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "starmesh/http/openai_errors.hpp"

namespace starmesh::http {
namespace {

using Clock = std::chrono::steady_clock;

// Waits until `fd` is ready for `events`, at most `timeout`; false on timeout or error.
bool wait_for(socket_t fd, short events, std::chrono::milliseconds timeout) {
  pollfd p{fd, events, 0};
  for (;;) {
    const int n = ::poll(&p, 1, int(std::max<int64_t>(0, timeout.count())));
    if (n < 0 && errno == EINTR) continue;
    return n > 0;
  }
}

// One connection's bytes, over all the requests it carries: buffered reads (a pipelined next
// request stays in the buffer), a byte budget and a deadline per request, writes bounded in
// time and without SIGPIPE.
class ConnectionStream final : public httplib::Stream {
 public:
  ConnectionStream(socket_t sock, const ConnectionLimits& limits) : sock_(sock), limits_(limits) {}

  void begin_request() {
    used_ = 0;
    deadline_ = Clock::now() + limits_.read_deadline;
  }
  // Waits for the next request's first byte, at most the keep-alive time; gives up early
  // when `stopping` says so.
  template <class Stopping>
  bool wait_next_request(Stopping stopping) const {
    if (pos_ < end_) return true;
    const auto until = Clock::now() + limits_.keep_alive;
    while (!stopping() && Clock::now() < until)
      if (wait_for(sock_, POLLIN, std::chrono::milliseconds(100))) return true;
    return false;
  }
  bool peer_gone() const {
    if (pos_ < end_) return false;
    pollfd p{sock_, POLLIN | POLLRDHUP, 0};
    if (::poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) return true;
    char byte;
    const ssize_t n = ::recv(sock_, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
  }

  bool is_readable() const override { return pos_ < end_ || wait_for(sock_, POLLIN, limits_.io_timeout); }
  bool is_writable() const override { return wait_for(sock_, POLLOUT, limits_.io_timeout); }

  ssize_t read(char* ptr, size_t size) override {
    if (pos_ == end_) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now());
      if (left.count() <= 0 || !wait_for(sock_, POLLIN, std::min(left, limits_.io_timeout))) return -1;
      ssize_t n;
      do n = ::recv(sock_, buffer_, sizeof buffer_, 0);
      while (n < 0 && errno == EINTR);
      if (n <= 0) return n;
      pos_ = 0;
      end_ = size_t(n);
    }
    const size_t n = std::min(size, end_ - pos_);
    if (limits_.max_request_bytes && used_ + n > limits_.max_request_bytes) return -1;
    std::memcpy(ptr, buffer_ + pos_, n);
    pos_ += n;
    used_ += n;
    return ssize_t(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!wait_for(sock_, POLLOUT, limits_.io_timeout)) return -1;
    ssize_t n;
    do n = ::send(sock_, ptr, size, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override { address(true, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { address(false, ip, port); }
  socket_t socket() const override { return sock_; }

 private:
  void address(bool peer, std::string& ip, int& port) const {
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    auto* sa = reinterpret_cast<sockaddr*>(&a);
    if ((peer ? ::getpeername(sock_, sa, &len) : ::getsockname(sock_, sa, &len)) != 0) return;
    char text[INET6_ADDRSTRLEN] = {};
    if (a.ss_family == AF_INET) {
      const auto* v4 = reinterpret_cast<const sockaddr_in*>(&a);
      ::inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
      port = ntohs(v4->sin_port);
    } else if (a.ss_family == AF_INET6) {
      const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a);
      ::inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
      port = ntohs(v6->sin6_port);
    }
    ip = text;
  }

  socket_t sock_;
  const ConnectionLimits& limits_;
  char buffer_[4096];
  size_t pos_ = 0, end_ = 0, used_ = 0;
  Clock::time_point deadline_{};
};

thread_local ConnectionStream* t_stream = nullptr;  // the connection this thread serves
thread_local bool t_refuse = false;                 // set while a connection past the cap is closed

}  // namespace

// httplib's thread pool behind a cap on connections served or waiting.
class ConnectionServer::Queue final : public httplib::TaskQueue {
 public:
  explicit Queue(ConnectionServer& server) : server_(server), pool_(size_t(server.limits_.max_threads)) {}
  void enqueue(std::function<void()> fn) override {
    if (load_.fetch_add(1) >= server_.limits_.max_connections) {
      --load_;
      t_refuse = true;  // fn is process_and_close_socket: it hands the socket to the refuser
      fn();
      t_refuse = false;
      return;
    }
    pool_.enqueue([this, fn = std::move(fn)] {
      fn();
      --load_;
    });
  }
  void shutdown() override { pool_.shutdown(); }

 private:
  ConnectionServer& server_;
  httplib::ThreadPool pool_;
  std::atomic<int> load_{0};
};

ConnectionServer::ConnectionServer(ConnectionLimits limits) : limits_(limits) {
  new_task_queue = [this] { return new Queue(*this); };
  const auto secs = [](std::chrono::milliseconds d) { return time_t(std::max<int64_t>(1, d.count() / 1000)); };
  set_read_timeout(secs(limits_.io_timeout));
  set_write_timeout(secs(limits_.io_timeout));
  set_keep_alive_timeout(secs(limits_.keep_alive));
  set_keep_alive_max_count(limits_.keep_alive_requests);
}

bool ConnectionServer::peer_gone() { return t_stream != nullptr && t_stream->peer_gone(); }

Refuser::Refuser() : thread_([this] { run(); }) {}

Refuser::~Refuser() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  for (const Pending& p : pending_) ::close(p.sock);
}

void Refuser::add(socket_t sock) {
  static const std::string answer = [] {
    const std::string body =
        error_body(make_error(ErrorCode::overloaded, "too many connections to this server: try again shortly"));
    return "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
           "Connection: close\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n\r\n" + body;
  }();
  // Never blocks: the answer fits an empty socket buffer.
  [[maybe_unused]] const ssize_t n = ::send(sock, answer.data(), answer.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  ::shutdown(sock, SHUT_WR);
  {
    std::lock_guard lock(mutex_);
    if (pending_.size() < 64) {
      pending_.push_back({sock, Clock::now() + std::chrono::seconds(1)});
      sock = INVALID_SOCKET;
    }
  }
  if (sock != INVALID_SOCKET) ::close(sock);
  wake_.notify_all();
}

void Refuser::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, std::chrono::milliseconds(20), [this] { return stopping_; });
    char scratch[4096];
    std::erase_if(pending_, [&](const Pending& p) {
      ssize_t n;
      while ((n = ::recv(p.sock, scratch, sizeof scratch, MSG_DONTWAIT)) > 0) {
      }
      const bool done = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) || Clock::now() > p.until;
      if (done) ::close(p.sock);
      return done;
    });
  }
}

bool ConnectionServer::process_and_close_socket(socket_t sock) {
  if (t_refuse) {
    ++refused_;
    refuser_.add(sock);
    return false;
  }
  ++connections_;
  ConnectionStream stream(sock, limits_);
  t_stream = &stream;
  bool ok = false;
  for (size_t left = limits_.keep_alive_requests; left > 0 && !stopping(); --left) {
    if (!stream.wait_next_request([this] { return stopping(); })) break;
    stream.begin_request();
    bool closed = false;
    ok = process_request(stream, left == 1, closed, nullptr);
    if (!ok || closed) break;
  }
  t_stream = nullptr;
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  --connections_;
  return ok;
}

}  // namespace starmesh::http
