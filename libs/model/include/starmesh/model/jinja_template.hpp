#pragma once
// A compiled Jinja template: the subset of jinja2 3.1 that HF chat templates use, rendered the
// way transformers' apply_chat_template renders them (jinja_lexer.hpp has the whitespace
// rules, jinja_parser.hpp the grammar, jinja_builtins.hpp the filters, tests and functions).
// Unknown filters and tests are refused when parsing, as jinja2 does when compiling.
// A Template is immutable and cheap to copy; render() may run on many threads at once.
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "starmesh/core/expected.hpp"
#include "starmesh/model/jinja_ast.hpp"
#include "starmesh/model/jinja_value.hpp"

namespace starmesh::jinja {

class Template {
 public:
  static Expected<Template> parse(std::string_view source, const Limits& limits = {});

  // `variables` are the template's context (messages, bos_token, ...), over the default
  // globals (range, namespace, dict, raise_exception); a variable of the same name hides one.
  Expected<std::string> render(std::vector<std::pair<std::string, Value>> variables) const;

  const Limits& limits() const { return limits_; }

 private:
  Template(std::shared_ptr<const std::vector<Stmt>> program, Limits limits)
      : program_(std::move(program)), limits_(limits) {}
  std::shared_ptr<const std::vector<Stmt>> program_;
  Limits limits_;
};

}  // namespace starmesh::jinja
