#pragma once
// A kept context's name as clients see it: 128 random bits, written as 32 lowercase hex
// digits. Unguessable, so holding one is what it takes to ask a context; the router also
// checks that the asker's API token is the one that kept it.
#include <compare>
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>

#include "starmesh/core/expected.hpp"

namespace starmesh {

struct ContextId {
  uint64_t hi = 0, lo = 0;
  bool empty() const { return hi == 0 && lo == 0; }
  std::string hex() const;
  // 32 hex digits (either case); anything else is an invalid_argument error naming it.
  static Expected<ContextId> parse(std::string_view text);
  // From the kernel's random source (getrandom); never empty.
  static ContextId random();
  auto operator<=>(const ContextId&) const = default;
};

// For test and log output: the 32 hex digits.
inline std::ostream& operator<<(std::ostream& out, const ContextId& id) { return out << id.hex(); }

}  // namespace starmesh
