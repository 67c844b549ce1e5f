#pragma once
// Failed logins, answered slowly and one at a time per peer address: however many connections
// or pipelined calls a peer opens, it gets at most one failed answer per `spacing`, so guessing
// a token runs at about 4 guesses a second per address. A correct token is answered at once (it
// is no guess), so a rightful client behind the same address is slowed only while guesses from
// it queue. A plain object: time comes in, nothing waits here.
#include <chrono>
#include <cstddef>
#include <string>
#include <unordered_map>

namespace starmesh::api {

class LoginLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  struct Options {
    std::chrono::milliseconds spacing{250};
    size_t max_peers = 65536;  // addresses tracked; past it, new ones share one slot
  };
  explicit LoginLimiter(Options o) : o_(o) {}
  LoginLimiter() : LoginLimiter(Options{}) {}

  // When to answer a failed login from `peer` that came at `now`: one spacing after the
  // peer's previous failed answer (or after now). Books that slot.
  Clock::time_point failure_slot(const std::string& peer, Clock::time_point now);
  size_t peers() const { return next_.size(); }

  static constexpr const char* kOverflowPeer = "*";  // the slot shared past max_peers

 private:
  Options o_;
  std::unordered_map<std::string, Clock::time_point> next_;  // a peer's last booked answer
};

}  // namespace starmesh::api
