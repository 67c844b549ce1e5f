#include "starmesh/service/api_tokens.hpp"

#include <cstdint>
#include <fstream>

namespace starmesh {

Expected<std::vector<std::string>> load_api_tokens(const std::string& path) {
  std::ifstream in(path);
  if (!in) return make_error("cannot read the API tokens file '", path, "'");
  std::vector<std::string> tokens;
  for (std::string line; std::getline(in, line);) {
    const auto b = line.find_first_not_of(" \t\r"), e = line.find_last_not_of(" \t\r");
    if (b == std::string::npos || line[b] == '#') continue;
    tokens.push_back(line.substr(b, e - b + 1));
  }
  if (tokens.empty()) return make_error("the API tokens file '", path, "' holds no token (one per line)");
  return tokens;
}

bool api_token_accepted(const std::vector<std::string>& tokens, std::string_view credentials) {
  if (tokens.empty()) return true;
  bool ok = false;
  for (const std::string& t : tokens) {
    unsigned diff = t.size() != credentials.size();
    for (size_t i = 0; i < t.size(); ++i)
      diff |= unsigned(uint8_t(t[i]) ^ uint8_t(i < credentials.size() ? credentials[i] : 0));
    ok |= diff == 0;
  }
  return ok;
}

}  // namespace starmesh
