#pragma once
// Jinja source -> tokens, with the whitespace rules transformers renders chat templates under
// (jinja2 3.1, trim_blocks and lstrip_blocks on, keep_trailing_newline off):
//   - "\r\n" and "\r" become "\n", and one newline ending the template is dropped;
//   - trim_blocks: the first newline after a block or comment tag (%} or #}) is removed;
//   - lstrip_blocks: spaces and tabs from the start of a line up to a block or comment tag
//     are removed (not before {{ }});
//   - "{%-" / "-%}" (and "{{-", "-}}", "{#-", "-#}") strip all whitespace on that side,
//     "{%+" / "+%}" keep it; "whitespace" is Python's (Unicode) idea of it.
// Comments produce no tokens. String literals are unescaped as Python's unicode-escape does.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "starmesh/core/expected.hpp"
#include "starmesh/model/jinja_value.hpp"

namespace starmesh::jinja {

enum class TokenKind : uint8_t {
  data,            // text outside tags
  variable_begin,  // {{
  variable_end,    // }}
  block_begin,     // {%
  block_end,       // %}
  name,            // identifiers and keywords (if, for, in, not, true, ...)
  string,          // text: the unescaped value
  integer,         // int_value
  floating,        // float_value
  op,              // text: the operator, e.g. "==", "[", "|"
  end,             // the end of the template
};

struct Token {
  TokenKind kind = TokenKind::end;
  std::string text;
  int64_t int_value = 0;
  double float_value = 0;
  int line = 1;
};

// Errors (invalid_argument) name the line: unclosed tags, comments and strings, unbalanced
// brackets, characters that are no token, a source over Limits::max_source_bytes or not UTF-8.
Expected<std::vector<Token>> tokenize(std::string_view source, const Limits& limits);

}  // namespace starmesh::jinja
