#pragma once
// One client connection of the API and what guards it before login: its peer address (for
// the login limiter), whether it has logged in, its failed logins, and a byte budget on what
// it may send before logging in (Cap'n Proto sizes a message from its header, so a peer could
// otherwise announce and send tens of megabytes unauthenticated).
#include <kj/async-io.h>

#include <cstddef>
#include <memory>
#include <string>

namespace starmesh::api {

struct ApiConnection {
  std::string peer;  // the address without the port ("127.0.0.1")
  bool logged_in = false;
  int failures_pending = 0;                    // failed logins not yet answered
  int failures = 0;                            // failed logins on this connection, ever
  kj::Own<kj::PromiseFulfiller<void>> closer;  // fulfilled: the server closes the connection
  void close() {
    if (closer.get() != nullptr && closer->isWaiting()) closer->fulfill();
  }
};

// The peer's address of a socket stream, without the port; "unknown" when it has none.
std::string peer_address(kj::AsyncIoStream& stream);

// The connection's stream: reads stop with a DISCONNECTED error once more than `budget` bytes
// arrive before login (a read that needs more than is left fails at once).
class GuardedStream final : public kj::AsyncIoStream {
 public:
  GuardedStream(kj::Own<kj::AsyncIoStream> inner, std::shared_ptr<ApiConnection> conn, size_t budget)
      : inner_(kj::mv(inner)), conn_(std::move(conn)), budget_(budget) {}

  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override;
  kj::Promise<void> write(const void* buffer, size_t size) override { return inner_->write(buffer, size); }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    return inner_->write(pieces);
  }
  kj::Promise<void> whenWriteDisconnected() override { return inner_->whenWriteDisconnected(); }
  void shutdownWrite() override { inner_->shutdownWrite(); }
  void abortRead() override { inner_->abortRead(); }

 private:
  kj::Own<kj::AsyncIoStream> inner_;
  std::shared_ptr<ApiConnection> conn_;
  size_t budget_, read_ = 0;
};

}  // namespace starmesh::api
