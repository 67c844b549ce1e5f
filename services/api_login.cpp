#include "api_login.hpp"

#include <cstdlib>

#include "starmesh/api/api_server.hpp"

namespace starmesh::cli {

Expected<std::string> credentials(const std::string& token_file) {
  if (!token_file.empty()) {
    SM_ASSIGN(tokens, load_api_tokens(token_file));
    return tokens.front();
  }
  const char* env = std::getenv("STARMESH_API_TOKEN");
  return std::string(env ? env : "");
}

}  // namespace starmesh::cli
