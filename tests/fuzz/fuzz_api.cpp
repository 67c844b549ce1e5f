// libFuzzer target: bytes from a hostile client into a connection of the public API
// (Cap'n Proto RPC). The first byte picks the server: even, one that wants a token (the bytes
// land before login: the pre-login budget, login limiter, framing); odd, one open to any
// credentials (the bytes reach the gateway, request validation and the engine). The rest is
// sent, the write side shut, and the answer read until the server closes or 200 ms pass.
// Seeds: make_api_seeds records real clients' bytes (a login, info, generate, drop).
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "api_fixture.hpp"
#include "support/http_client.hpp"

namespace {

starmesh::fuzz::ServedApi& served() {
  static starmesh::fuzz::ServedApi api;
  return api;
}

// Reads what the server answers until it closes the connection or `limit` passes.
void drain(int fd, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  char buffer[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    if (left.count() <= 0) return;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, int(left.count())) <= 0) return;
    if (::recv(fd, buffer, sizeof buffer, 0) <= 0) return;
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)served();  // the model loads and the servers start before any input is timed
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  starmesh::fuzz::ServedApi& api = served();
  const uint16_t port = (data[0] % 2 == 0 ? api.with_token : api.open)->port();
  const int fd = starmesh::test::connect_loopback(port);
  if (fd < 0) return 0;
  for (size_t done = 1; done < size;) {
    const ssize_t n = ::send(fd, data + done, size - done, MSG_NOSIGNAL);
    if (n <= 0) break;
    done += size_t(n);
  }
  ::shutdown(fd, SHUT_WR);
  drain(fd, std::chrono::milliseconds(200));
  ::close(fd);
  return 0;
}
