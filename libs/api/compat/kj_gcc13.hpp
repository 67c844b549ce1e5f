#pragma once
// Cap'n Proto 0.9's headers under GCC 13 in C++20: kj::StringPtr declares both operator== and
// operator!= as members, so by P2468 GCC 13 no longer rewrites `const char* == StringPtr`
// through the reversed member, and capnp/blob.h stops compiling (fixed upstream in 0.10).
// These free operators, found by argument-dependent lookup, restore the comparison. Force-
// included into libs/api's own sources only, and only under GCC 13 or newer (cmake decides).
#include <kj/string.h>

namespace kj {
inline bool operator==(const char* a, const StringPtr& b) { return b == StringPtr(a); }
inline bool operator!=(const char* a, const StringPtr& b) { return !(b == StringPtr(a)); }
}  // namespace kj
