#pragma once
// How the CLI's API clients (`starmesh client`, `starmesh eval --connect`) log in.
#include <string>

#include "starmesh/core/expected.hpp"

namespace starmesh::cli {

// The login token: the first in `token_file`, else $STARMESH_API_TOKEN, else none (an open
// router takes any).
Expected<std::string> credentials(const std::string& token_file);

}  // namespace starmesh::cli
