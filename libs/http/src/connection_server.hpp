#pragma once
// cpp-httplib's server (Debian's 0.11), with three things it lacks and the door needs:
//  - a handler can ask whether its client is still there (peer_gone), so a client that goes
//    away cancels its generation even while nothing is written to it (phase 1, say);
//  - each request's headers and body must arrive within a deadline and a byte budget (0.11
//    bounds only each recv and the body), and writes never raise SIGPIPE;
//  - accepted connections are capped: past the cap one gets a 503 at once, instead of
//    waiting in an unbounded queue for a thread.
// It serves each connection with its own Stream (ConnectionStream below) through httplib's
// process_request, keeping httplib's keep-alive rules (count and idle timeout).
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace starmesh::http {

struct ConnectionLimits {
  int max_threads = 64;                            // requests served at once
  int max_connections = 256;                       // accepted connections, served or waiting for a thread
  size_t max_request_bytes = 0;                    // headers + body of one request (0: unbounded)
  std::chrono::milliseconds read_deadline{10000};  // for a request's headers and body, from its first byte
  std::chrono::milliseconds io_timeout{10000};     // for each read or write to make progress
  std::chrono::milliseconds keep_alive{5000};      // an idle kept-alive connection is closed after this
  size_t keep_alive_requests = 100;                // requests per connection
};

// Answers connections past the cap with 429 off the accepting thread: the answer goes out at
// once, then the socket is drained until its client closes (at most a second), so the client
// reads the answer instead of a reset. At most 64 wait; past that they are closed outright.
class Refuser {
 public:
  Refuser();
  ~Refuser();
  void add(socket_t sock);

 private:
  void run();
  struct Pending {
    socket_t sock;
    std::chrono::steady_clock::time_point until;
  };
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<Pending> pending_;
  bool stopping_ = false;
  std::thread thread_;
};

class ConnectionServer : public httplib::Server {
 public:
  explicit ConnectionServer(ConnectionLimits limits);
  // Whether the client of the request this thread is serving has closed its connection
  // (false outside a request, and while it has sent more bytes: a pipelined request).
  static bool peer_gone();
  // stop() has been called: waiting handlers give up.
  bool stopping() const { return svr_sock_ == INVALID_SOCKET; }
  int64_t connections() const { return connections_.load(); }
  int64_t refused_connections() const { return refused_.load(); }

 private:
  bool process_and_close_socket(socket_t sock) override;

  ConnectionLimits limits_;
  std::atomic<int64_t> connections_{0}, refused_{0};
  Refuser refuser_;
  class Queue;
};

}  // namespace starmesh::http
