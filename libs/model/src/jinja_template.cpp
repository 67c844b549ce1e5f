#include "starmesh/model/jinja_template.hpp"

#include "starmesh/model/jinja_builtins.hpp"
#include "starmesh/model/jinja_eval.hpp"
#include "starmesh/model/jinja_lexer.hpp"
#include "starmesh/model/jinja_parser.hpp"

namespace starmesh::jinja {
namespace {

Error unknown(int line, std::string_view what, const std::string& name) {
  return make_error(ErrorCode::invalid_argument, "chat template line ", line, ": no ", what, " named '", name,
                    "' (chat templates get the filters and tests jinja_builtins.hpp lists)");
}

// Every filter and test the template names exists (jinja2 refuses unknown ones at compile time).
Status check_names(const Expr& e) {
  if (e.kind == ExprKind::filter && !has_filter(e.name)) return unknown(e.line, "filter", e.name);
  if (e.kind == ExprKind::test && !has_test(e.name)) return unknown(e.line, "test", e.name);
  for (const ExprPtr& c : e.children)
    if (c) SM_TRY(check_names(*c));
  for (const Keyword& k : e.keywords) SM_TRY(check_names(*k.value));
  return Status::ok();
}

Status check_names(const std::vector<Stmt>& body) {
  for (const Stmt& s : body) {
    if (s.expr) SM_TRY(check_names(*s.expr));
    if (s.condition) SM_TRY(check_names(*s.condition));
    for (const Branch& b : s.branches) {
      SM_TRY(check_names(*b.condition));
      SM_TRY(check_names(b.body));
    }
    SM_TRY(check_names(s.body));
    SM_TRY(check_names(s.else_body));
  }
  return Status::ok();
}

}  // namespace

Expected<Template> Template::parse(std::string_view source, const Limits& limits) {
  SM_ASSIGN(tokens, tokenize(source, limits));
  SM_ASSIGN(program, jinja::parse(tokens, limits));
  SM_TRY(check_names(program));
  return Template(std::make_shared<const std::vector<Stmt>>(std::move(program)), limits);
}

Expected<std::string> Template::render(std::vector<std::pair<std::string, Value>> variables) const {
  std::vector<std::pair<std::string, Value>> scope = default_globals();
  for (auto& [name, value] : variables) {
    bool replaced = false;
    for (auto& entry : scope)
      if (entry.first == name) entry.second = std::move(value), replaced = true;
    if (!replaced) scope.emplace_back(std::move(name), std::move(value));
  }
  std::string out;
  SM_TRY(evaluate(*program_, std::move(scope), limits_, out));
  return out;
}

}  // namespace starmesh::jinja
