#pragma once
// The API tokens every public door of a router shares (Cap'n Proto login, HTTP Bearer): read
// from one file, compared in constant time. The token a client proves is its tenant.
#include <string>
#include <string_view>
#include <vector>

#include "starmesh/core/expected.hpp"

namespace starmesh {

// The API tokens of a router: one per line of `path`; blank lines and lines starting with '#'
// are skipped, surrounding spaces dropped. An unreadable file, or one without a token, is an
// error naming it.
Expected<std::vector<std::string>> load_api_tokens(const std::string& path);

// Whether `credentials` is one of `tokens` (an empty list accepts anything: an open door).
// Compares every byte of every token, so the time taken says nothing about near misses.
bool api_token_accepted(const std::vector<std::string>& tokens, std::string_view credentials);

}  // namespace starmesh
