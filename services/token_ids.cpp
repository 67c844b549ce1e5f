#include "token_ids.hpp"

#include <climits>
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

}  // namespace starmesh::cli
