#include "starmesh/service/context_id.hpp"

#include <sys/random.h>

#include <cerrno>
#include <cstdio>
#include <stdexcept>

namespace starmesh {

std::string ContextId::hex() const {
  char text[33];
  std::snprintf(text, sizeof text, "%016llx%016llx", static_cast<unsigned long long>(hi),
                static_cast<unsigned long long>(lo));
  return text;
}

Expected<ContextId> ContextId::parse(std::string_view text) {
  auto bad = [&] {
    return make_error(ErrorCode::invalid_argument, "'", std::string(text.substr(0, 40)),
                      "' is not a context id (32 hex digits)");
  };
  if (text.size() != 32) return bad();
  ContextId id;
  for (size_t i = 0; i < 32; ++i) {
    const char c = text[i];
    uint64_t v = 0;
    if (c >= '0' && c <= '9')
      v = uint64_t(c - '0');
    else if (c >= 'a' && c <= 'f')
      v = uint64_t(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F')
      v = uint64_t(c - 'A' + 10);
    else
      return bad();
    uint64_t& half = i < 16 ? id.hi : id.lo;
    half = half << 4 | v;
  }
  return id;
}

ContextId ContextId::random() {
  ContextId id;
  while (id.empty()) {
    uint64_t words[2];
    size_t got = 0;
    while (got < sizeof words) {
      const ssize_t n = getrandom(reinterpret_cast<char*>(words) + got, sizeof words - got, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw std::runtime_error("getrandom failed: no source of randomness for context ids");
      got += size_t(n);
    }
    id = {words[0], words[1]};
  }
  return id;
}

}  // namespace starmesh
