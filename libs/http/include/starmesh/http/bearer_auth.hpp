#pragma once
// Bearer tokens on the HTTP door: the router's API tokens (the same file as the Cap'n Proto
// login; the token is the tenant), compared in constant time, and guessing slowed per peer
// address. An address may fail a burst of `burst` times, then once per `spacing`; past that
// every request from it gets 429 without its token being looked at (else a correct guess
// would still be told apart at full speed). A plain object: time comes in, nothing waits.
#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "starmesh/core/expected.hpp"

namespace starmesh::http {

// The token of an "Authorization: Bearer <token>" header value; nullopt when it is not one.
std::optional<std::string_view> bearer_token(std::string_view authorization);

class BearerAuth {
 public:
  using Clock = std::chrono::steady_clock;
  struct Options {
    std::chrono::milliseconds spacing{250};
    int burst = 4;
    size_t max_peers = 65536;  // addresses tracked; past it, new ones share one slot
  };
  // Empty `tokens`: an open door (anything, or nothing, is accepted; the tenant is "").
  BearerAuth(std::vector<std::string> tokens, Options options);
  explicit BearerAuth(std::vector<std::string> tokens) : BearerAuth(std::move(tokens), Options{}) {}

  // The tenant for a request from `peer` with this Authorization header value (may be
  // empty): the token, or unauthenticated (401), or overloaded (429) while `peer` is slowed.
  // Thread-safe.
  Expected<std::string> check(const std::string& peer, std::string_view authorization, Clock::time_point now);
  bool open() const { return tokens_.empty(); }

 private:
  std::vector<std::string> tokens_;
  Options o_;
  std::mutex mutex_;
  std::unordered_map<std::string, Clock::time_point> debt_;  // per peer: when its failures are paid off
};

}  // namespace starmesh::http
