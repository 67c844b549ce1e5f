// Seeds for fuzz_api: the bytes real clients (ApiClient) send to the API, recorded by a proxy
// between them and a served API, one file per session, each under both first bytes (0: the
// server that wants a token, 1: the open one). Usage: make_api_seeds OUT_DIR
#include <fmt/core.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

#include "api_fixture.hpp"
#include "starmesh/api/api_client.hpp"
#include "support/http_client.hpp"

namespace {

using namespace starmesh;

// Forwards one connection from a client to `upstream` and back; keeps what the client sent.
class RecordingProxy {
 public:
  explicit RecordingProxy(uint16_t upstream) : upstream_(upstream) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr = test::loopback_address(0);
    socklen_t len = sizeof addr;
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listener_, 1) != 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      throw std::runtime_error("proxy: cannot listen");
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~RecordingProxy() {
    if (thread_.joinable()) thread_.join();
    ::close(listener_);
  }
  uint16_t port() const { return port_; }
  // Waits for the client to close, then hands over what it sent.
  std::string finish() {
    thread_.join();
    return sent_;
  }

 private:
  void run() {
    const int client = ::accept(listener_, nullptr, nullptr);
    const int server = test::connect_loopback(upstream_);
    char buffer[65536];
    for (bool open = client >= 0 && server >= 0; open;) {
      pollfd p[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
      if (::poll(p, 2, 5000) <= 0) break;
      for (int i = 0; i < 2 && open; ++i) {
        if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        const ssize_t n = ::recv(p[i].fd, buffer, sizeof buffer, 0);
        if (n <= 0) {
          open = false;
          break;
        }
        if (i == 0) sent_.append(buffer, size_t(n));
        ::send(i == 0 ? server : client, buffer, size_t(n), MSG_NOSIGNAL);
      }
    }
    if (client >= 0) ::close(client);
    if (server >= 0) ::close(server);
  }
  uint16_t upstream_, port_ = 0;
  int listener_ = -1;
  std::thread thread_;
  std::string sent_;
};

// Runs `session` with a client logged in through a recording proxy; returns the client's bytes.
std::string record(uint16_t server_port, const std::string& credentials,
                   const std::function<void(ApiClient&)>& session) {
  RecordingProxy proxy(server_port);
  {
    auto client = ApiClient::connect(fmt::format("127.0.0.1:{}", proxy.port()), credentials);
    if (client) session(**client);
  }
  return proxy.finish();
}

void write_seed(const std::filesystem::path& dir, const std::string& name, const std::string& bytes) {
  for (char server : {char(0), char(1)}) {
    std::ofstream out(dir / fmt::format("{}-{}", name, int(server)), std::ios::binary);
    out << server << bytes;
  }
}

GenerateRequest request(AttentionMode mode) {
  GenerateRequest r;
  r.context_text = "The quick brown fox jumps over the lazy dog. It was a sunny day in the park.";
  r.query_text = " What jumped?";
  r.mode = mode;
  r.block_size = 8;
  r.max_new_tokens = 4;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fmt::print(stderr, "usage: make_api_seeds OUT_DIR\n");
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);
  fuzz::ServedApi api;
  const uint16_t port = api.with_token->port();
  const auto ignore = [](const TokenChunk&) { return true; };
  write_seed(dir, "login-info", record(port, fuzz::kToken, [](ApiClient& c) { (void)c.info(); }));
  write_seed(dir, "bad-login", record(port, "not-the-token", [](ApiClient&) {}));
  write_seed(dir, "generate-star",
             record(port, fuzz::kToken, [&](ApiClient& c) { (void)c.generate(request(AttentionMode::star), ignore); }));
  write_seed(dir, "generate-global", record(port, fuzz::kToken, [&](ApiClient& c) {
               (void)c.generate(request(AttentionMode::global), ignore);
             }));
  write_seed(dir, "generate-cancel", record(port, fuzz::kToken, [&](ApiClient& c) {
               (void)c.generate(request(AttentionMode::star), [](const TokenChunk&) { return false; });
             }));
  write_seed(dir, "keep-drop", record(port, fuzz::kToken, [&](ApiClient& c) {
               GenerateRequest r = request(AttentionMode::star);
               r.keep_context = true;
               auto s = c.generate(r, ignore);
               (void)c.drop_context(s && !s->context_id.empty() ? s->context_id : ContextId::random());
             }));
  fmt::print("seeds in {}\n", dir.string());
  return 0;
}
