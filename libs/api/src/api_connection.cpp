#include "api_connection.hpp"

#include <arpa/inet.h>
#include <kj/debug.h>
#include <netinet/in.h>
#include <sys/socket.h>

namespace starmesh::api {

std::string peer_address(kj::AsyncIoStream& stream) {
  sockaddr_storage addr{};
  uint len = sizeof addr;
  try {
    stream.getpeername(reinterpret_cast<sockaddr*>(&addr), &len);
  } catch (const kj::Exception&) {
    return "unknown";
  }
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&addr)->sin_addr, text, sizeof text);
  else if (addr.ss_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&addr)->sin6_addr, text, sizeof text);
  else
    return "unknown";
  return text;
}

kj::Promise<size_t> GuardedStream::tryRead(void* buffer, size_t min_bytes, size_t max_bytes) {
  if (conn_->logged_in) return inner_->tryRead(buffer, min_bytes, max_bytes);
  const size_t left = budget_ > read_ ? budget_ - read_ : 0;
  if (min_bytes > left)
    return KJ_EXCEPTION(DISCONNECTED, "more data before login than a login needs; closing the connection", min_bytes,
                        left);
  return inner_->tryRead(buffer, min_bytes, std::min(max_bytes, left)).then([this](size_t n) {
    read_ += n;
    return n;
  });
}

}  // namespace starmesh::api
