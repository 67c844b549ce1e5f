// The API's guards before login, each attack bounded and followed by a normal request:
// guessing tokens (pipelined on one connection, or over several) is answered at one failure
// per 250 ms per address while the right token gets in at once; a connection with too many
// failed logins is closed; bytes before login are capped; a connection that does not log in
// is closed after the login timeout; past the connection cap new ones are closed at once; and
// when accept() runs out of file descriptors the listener waits and serves again.
#include <arpa/inet.h>
#include <capnp/ez-rpc.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>
#include <vector>

#include "login_limiter.hpp"
#include "starmesh.capnp.h"
#include "starmesh/api/api_client.hpp"
#include "starmesh/api/api_server.hpp"
#include "support/http_client.hpp"

using namespace starmesh;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

const std::vector<std::string> kTokens = {"right-token-5c1e"};

// Streams the query ids back as the generated tokens: a request whose answer is known.
class Echo final : public generate_service_i {
 public:
  void generate(GenerateRequest r, std::function<bool(const TokenChunk&)> on_tokens,
                std::function<void(Expected<GenerateSummary>)> on_done) override {
    on_tokens(TokenChunk{r.query_ids, ""});
    GenerateSummary s;
    s.generated_tokens = int64_t(r.query_ids.size());
    on_done(s);
  }
  void drop_context(ContextId, std::string, std::function<void(Status)> on_done) override { on_done({}); }
};

struct Server {
  Echo service;
  std::unique_ptr<ApiServer> api;
  explicit Server(ApiLimits limits = {}) {
    auto s = ApiServer::start(service, "127.0.0.1:0", {}, kTokens, limits);
    REQUIRE_MESSAGE(s, (s ? "" : s.error().message));
    api = std::move(*s);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(api->port()); }
  // A rightful client logs in and gets its request answered.
  void serves() const {
    const auto t0 = Clock::now();
    auto c = ApiClient::connect(address(), kTokens[0]);
    REQUIRE_MESSAGE(c, (c ? "" : c.error().message));
    CHECK(Clock::now() - t0 < 250ms);  // the right token is no guess: no wait
    GenerateRequest r;
    r.mode = AttentionMode::global;
    r.query_ids = {7, 8, 9};
    std::vector<int32_t> got;
    auto done = (*c)->generate(r, [&](const TokenChunk& chunk) {
      got.insert(got.end(), chunk.ids.begin(), chunk.ids.end());
      return true;
    });
    REQUIRE_MESSAGE(done, (done ? "" : done.error().message));
    CHECK(got == r.query_ids);
  }
};

// Whether the server closed `fd` within `wait` (a read sees end of file or a reset).
bool closed_by_server(int fd, std::chrono::milliseconds wait) {
  pollfd p{fd, POLLIN, 0};
  const auto until = Clock::now() + wait;
  while (Clock::now() < until) {
    if (poll(&p, 1, 50) > 0) {
      char buf[256];
      const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n <= 0) return true;
    }
  }
  return false;
}

// `count` logins with a wrong token, pipelined on one Cap'n Proto connection; the time until
// all are answered, and how many were refused as too many for the connection.
struct Guesses {
  Clock::duration took;
  int refused = 0, closed = 0;
};
Guesses guess(const std::string& address, int count) {
  capnp::EzRpcClient client(address);
  auto gateway = client.getMain<api::wire::Gateway>();
  auto calls = kj::heapArrayBuilder<kj::Promise<void>>(size_t(count));
  Guesses g;
  const auto t0 = Clock::now();
  for (int i = 0; i < count; ++i) {
    auto req = gateway.loginRequest();
    req.setCredentials("guess-" + std::to_string(i));
    calls.add(req.send().then([](auto&&) { FAIL("a wrong token got in"); },
                              [&g](kj::Exception&& e) {
                                const std::string what = e.getDescription().cStr();
                                if (what.find("too many failed logins") != std::string::npos) ++g.refused;
                                if (e.getType() == kj::Exception::Type::DISCONNECTED) ++g.closed;
                              }));
  }
  kj::joinPromises(calls.finish()).wait(client.getWaitScope());
  g.took = Clock::now() - t0;
  return g;
}

}  // namespace

TEST_CASE("the login limiter gives each address one failed answer per spacing, and bounds its memory") {
  api::LoginLimiter limiter({250ms, 3});
  const auto t = Clock::now();
  CHECK(limiter.failure_slot("10.0.0.1", t) == t + 250ms);
  CHECK(limiter.failure_slot("10.0.0.1", t) == t + 500ms);            // queued behind the first
  CHECK(limiter.failure_slot("10.0.0.2", t) == t + 250ms);            // another address: its own slots
  CHECK(limiter.failure_slot("10.0.0.1", t + 2s) == t + 2s + 250ms);  // after a pause, no debt
  CHECK(limiter.failure_slot("10.0.0.3", t) == t + 250ms);
  // Full: a new address shares the overflow slot; once the old slots are past, they go.
  CHECK(limiter.failure_slot("10.0.0.4", t) == t + 250ms);
  CHECK(limiter.failure_slot("10.0.0.5", t) == t + 500ms);
  CHECK(limiter.peers() <= 4);
  limiter.failure_slot("10.0.0.6", t + 10s);
  CHECK(limiter.peers() <= 3);
}

TEST_CASE("guessing over pipelined calls and several connections runs at 4 a second per address") {
  Server server;
  // 3 connections x 4 pipelined guesses at once: 12 failures, answered one per 250 ms.
  std::vector<std::thread> attackers;
  std::vector<Guesses> results(3);
  for (int i = 0; i < 3; ++i) attackers.emplace_back([&, i] { results[size_t(i)] = guess(server.address(), 4); });
  for (auto& t : attackers) t.join();
  Clock::duration slowest{};
  for (const Guesses& g : results) {
    CHECK(g.refused == 0);
    slowest = std::max(slowest, g.took);
  }
  CHECK(slowest >= 12 * 250ms - 100ms);
  server.serves();
}

TEST_CASE("a connection with more failed logins pending than allowed is closed, and the server serves on") {
  Server server;
  const Guesses g = guess(server.address(), 10);
  CHECK(g.refused + g.closed >= 6);  // 4 wait for their answers; the rest are refused or cut off
  CHECK(g.took < 4 * 250ms + 1s);
  server.serves();
  CHECK(server.api->connections() <= 1);
}

TEST_CASE("a peer that sends more than a login before logging in is cut off") {
  Server server;
  const int fd = test::connect_loopback(server.api->port());
  REQUIRE(fd >= 0);
  // A frame announcing one segment of 8M words (64 MiB), then 1 MiB of it.
  const uint32_t header[2] = {0, 8u << 20};
  CHECK(send(fd, header, sizeof header, 0) == ssize_t(sizeof header));
  std::vector<char> junk(1 << 20, 'x');
  size_t sent = 0;
  for (int i = 0; i < 64 && sent < junk.size(); ++i) {
    const ssize_t n = send(fd, junk.data() + sent, junk.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) sent += size_t(n);
    if (n < 0 && errno != EAGAIN) break;
    std::this_thread::sleep_for(10ms);
  }
  CHECK(closed_by_server(fd, 3s));
  close(fd);
  server.serves();
}

TEST_CASE("a connection that does not log in within the login timeout is closed") {
  ApiLimits limits;
  limits.login_timeout = 300ms;
  Server server(limits);
  const int fd = test::connect_loopback(server.api->port());
  REQUIRE(fd >= 0);
  const auto t0 = Clock::now();
  CHECK(closed_by_server(fd, 3s));
  CHECK(Clock::now() - t0 >= 250ms);
  close(fd);
  server.serves();  // a client that logs in at once is not cut off
}

TEST_CASE("past the connection cap new connections are closed at once, and the server serves when they go") {
  ApiLimits limits;
  limits.max_connections = 4;
  Server server(limits);
  std::vector<int> held;
  for (int i = 0; i < 4; ++i) held.push_back(test::connect_loopback(server.api->port()));
  for (int fd : held) REQUIRE(fd >= 0);
  for (int i = 0; i < 100 && server.api->connections() < 4; ++i) std::this_thread::sleep_for(10ms);
  CHECK(server.api->connections() == 4);
  const int extra = test::connect_loopback(server.api->port());
  REQUIRE(extra >= 0);
  CHECK(closed_by_server(extra, 2s));
  CHECK(server.api->refused_connections() >= 1);
  close(extra);
  for (int fd : held) close(fd);
  for (int i = 0; i < 200 && server.api->connections() > 0; ++i) std::this_thread::sleep_for(10ms);
  server.serves();
}

TEST_CASE("when accept() runs out of file descriptors the listener waits and accepts again") {
  Server server;
  rlimit old{};
  REQUIRE(getrlimit(RLIMIT_NOFILE, &old) == 0);
  // Sockets made first, the limit then set to what is open, then they connect: the server's
  // accept() (same process) has no descriptor left for them.
  std::vector<int> fds;
  for (int i = 0; i < 4; ++i) fds.push_back(socket(AF_INET, SOCK_STREAM, 0));
  int lowest_free = 0;  // a new descriptor takes the lowest free number: at the limit, none is left
  while (fcntl(lowest_free, F_GETFD) != -1) ++lowest_free;
  rlimit tight = old;
  tight.rlim_cur = rlim_t(lowest_free);
  REQUIRE(setrlimit(RLIMIT_NOFILE, &tight) == 0);
  const sockaddr_in a = test::loopback_address(server.api->port());
  for (int fd : fds) CHECK(connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
  // Several failures: the retries themselves fail while no descriptor is free, and the loop
  // must survive them (kj's accept() throws at once on a retry).
  for (int i = 0; i < 200 && server.api->accept_failures() < 3; ++i) std::this_thread::sleep_for(10ms);
  CHECK(server.api->accept_failures() >= 3);
  for (int fd : fds) close(fd);
  REQUIRE(setrlimit(RLIMIT_NOFILE, &old) == 0);
  CHECK(server.api->serving());
  std::this_thread::sleep_for(1100ms);  // the listener's longest wait
  server.serves();
}
