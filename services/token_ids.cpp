#include "token_ids.hpp"

#include <cctype>
#include <climits>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace starmesh::cli {

Expected<std::vector<int32_t>> parse_ids(const std::string& flag, const std::string& text) {
  std::vector<int32_t> ids;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    try {
      size_t used = 0;
      const long v = std::stol(item, &used);
      if (used != item.size() || v < INT32_MIN || v > INT32_MAX) throw std::invalid_argument(item);
      ids.push_back(int32_t(v));
    } catch (const std::exception&) {
      return make_error(flag, ": '", item, "' is not a token id (want e.g. 1,42,7)");
    }
  }
  return ids;
}

Expected<std::vector<int32_t>> read_ids_file(const std::string& flag, const std::string& path, int64_t max_ids) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return make_error(flag, ": cannot read '", path, "'");
  const std::streamoff size = in.tellg();
  // An id takes at most 11 characters and a comma.
  if (size < 0 || size > max_ids * 12 + 16)
    return make_error(flag, ": '", path, "' is ", size, " bytes, more than ", max_ids, " ids can take");
  in.seekg(0);
  std::string text(static_cast<size_t>(size), '\0');
  in.read(text.data(), size);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  SM_ASSIGN(ids, parse_ids(flag, text));
  if (int64_t(ids.size()) > max_ids)
    return make_error(flag, ": ", ids.size(), " ids, more than the ", max_ids, " allowed");
  return ids;
}

}  // namespace starmesh::cli
