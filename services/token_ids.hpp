#pragma once
// Token ids on the command line: "1,42,7".
#include <cstdint>
#include <string>
#include <vector>

#include "starmesh/core/expected.hpp"

namespace starmesh::cli {

// Parses comma-separated ids; an error names `flag` and the item that is not an id.
Expected<std::vector<int32_t>> parse_ids(const std::string& flag, const std::string& text);

// A file of comma-separated ids (a trailing newline allowed), at most `max_ids` of them; the
// file's size is bounded before it is read.
Expected<std::vector<int32_t>> read_ids_file(const std::string& flag, const std::string& path, int64_t max_ids);

}  // namespace starmesh::cli
