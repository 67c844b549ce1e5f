#pragma once
// Token ids on the command line: "1,42,7".
#include <cstdint>
#include <string>
#include <vector>

#include "starmesh/core/expected.hpp"

namespace starmesh::cli {

// Parses comma-separated ids; an error names `flag` and the item that is not an id.
Expected<std::vector<int32_t>> parse_ids(const std::string& flag, const std::string& text);

}  // namespace starmesh::cli
