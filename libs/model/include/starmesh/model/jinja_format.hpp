#pragma once
// Values as text, the way Python spells them: str() for `{{ x }}` and `~`, repr() inside lists
// and dicts, json.dumps() for transformers' tojson filter. Each stops with an error once the
// text would pass `max_bytes` (a list repeated a million times must not print for ever).
#include <optional>
#include <string>

#include "starmesh/core/expected.hpp"
#include "starmesh/model/jinja_value.hpp"

namespace starmesh::jinja {

// str(v): strings as they are, None as "None", True as "True", lists as "['a', 1]"; undefined
// prints as "" (jinja2's default Undefined).
Expected<std::string> to_str(const Value& v, size_t max_bytes);
// repr(v): strings quoted.
Expected<std::string> to_repr(const Value& v, size_t max_bytes);

// transformers' tojson: json.dumps(x, ensure_ascii=False, indent=None, separators=None,
// sort_keys=False). Undefined, namespaces and functions are not serialisable (an error).
struct JsonOptions {
  std::optional<std::string> indent;  // the string one level indents by (Python's indent=4 is "    ")
  std::optional<std::string> item_separator, key_separator;  // default ", " or "," with indent, and ": "
  bool ensure_ascii = false;
  bool sort_keys = false;
};
Expected<std::string> to_json(const Value& v, const JsonOptions& options, size_t max_bytes);

}  // namespace starmesh::jinja
