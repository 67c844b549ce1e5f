#pragma once
// The expression half of the Jinja parser (jinja_parser.hpp): the token cursor, nodes with their
// depth bound, and jinja2's expression grammar, operator by operator. jinja_parser.cpp derives
// the statement parser from it. Private to libs/model.
#include <algorithm>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "starmesh/core/expected.hpp"
#include "starmesh/model/jinja_ast.hpp"
#include "starmesh/model/jinja_lexer.hpp"

namespace starmesh::jinja {

// "'=='", "end of template", "string literal": a token as error messages name it.
std::string describe_token(const Token& t);

class ExpressionParser {
 public:
  ExpressionParser(const std::vector<Token>& tokens, const Limits& limits) : tokens_(tokens), limits_(limits) {}

 protected:
  // Depth of recursive descent (blocks in blocks, parentheses, `not not`, `- -`).
  class DepthGuard {
   public:
    explicit DepthGuard(ExpressionParser& p) : p_(p) { ++p_.depth_; }
    ~DepthGuard() { --p_.depth_; }
    Status check() const {
      if (p_.depth_ > p_.limits_.max_depth)
        return p_.error("the template nests deeper than ", p_.limits_.max_depth, " (the max_depth bound)");
      return Status::ok();
    }

   private:
    ExpressionParser& p_;
  };

  const Token& current() const { return tokens_[pos_]; }
  const Token& look() const { return tokens_[std::min(pos_ + 1, tokens_.size() - 1)]; }
  const Token& next() {
    const Token& t = tokens_[pos_];
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return t;
  }
  bool is_name(std::string_view value) const { return current().kind == TokenKind::name && current().text == value; }
  bool is_op(std::string_view value) const { return current().kind == TokenKind::op && current().text == value; }
  bool skip_name(std::string_view value) { return is_name(value) ? (next(), true) : false; }
  bool skip_op(std::string_view value) { return is_op(value) ? (next(), true) : false; }

  template <class... Parts>
  Error error(Parts&&... parts) const {
    return make_error(ErrorCode::invalid_argument, "chat template line ", current().line, ": ",
                      std::forward<Parts>(parts)...);
  }
  Status expect_op(std::string_view value) {
    if (!skip_op(value)) return error("expected '", value, "', got ", describe_token(current()));
    return Status::ok();
  }
  Status expect_kind(TokenKind kind, std::string_view what) {
    if (current().kind != kind) return error("expected ", what, ", got ", describe_token(current()));
    next();
    return Status::ok();
  }
  Expected<std::string> expect_name() {
    if (current().kind != TokenKind::name) return error("expected a name, got ", describe_token(current()));
    return next().text;
  }

  // A node over `children`, its depth checked (evaluation recurses down it).
  Expected<ExprPtr> node(ExprKind kind, int line, std::vector<ExprPtr> children = {}) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = line;
    for (const ExprPtr& c : children)
      if (c) e->depth = std::max(e->depth, c->depth + 1);
    if (e->depth > 4 * limits_.max_depth)
      return error("an expression nests deeper than ", 4 * limits_.max_depth, " (4 x the max_depth bound)");
    e->children = std::move(children);
    return e;
  }
  Expected<ExprPtr> literal(Value v, int line) {
    SM_ASSIGN(e, node(ExprKind::literal, line));
    e->value = std::move(v);
    return e;
  }

  bool at_end_name(const std::vector<std::string_view>& end_names) const {
    return current().kind == TokenKind::name &&
           std::find(end_names.begin(), end_names.end(), current().text) != end_names.end();
  }

  // What the statement parser calls: a tuple or expression (tags, {{ }}, for targets' iterables).
  bool is_tuple_end(const std::vector<std::string_view>& extra_end_names) const;
  Expected<ExprPtr> parse_tuple(bool simplified, bool with_condexpr, const std::vector<std::string_view>& extra_end,
                                bool explicit_parentheses);
  Expected<ExprPtr> parse_expression(bool with_condexpr);
  Expected<ExprPtr> parse_primary();

  const std::vector<Token>& tokens_;
  const Limits& limits_;
  size_t pos_ = 0;
  int depth_ = 0;

 private:
  Expected<ExprPtr> parse_condexpr();
  Expected<ExprPtr> binary_node(ExprKind kind, int line, ExprPtr left, ExprPtr right);
  Expected<ExprPtr> parse_or();
  Expected<ExprPtr> parse_and();
  Expected<ExprPtr> parse_not();
  Expected<ExprPtr> parse_compare();
  template <class Operand>
  Expected<ExprPtr> parse_binary(std::initializer_list<std::pair<std::string_view, BinaryOp>> ops, Operand operand);
  Expected<ExprPtr> parse_math1();
  Expected<ExprPtr> parse_concat();
  Expected<ExprPtr> parse_math2();
  Expected<ExprPtr> parse_pow();
  Expected<ExprPtr> parse_unary_filtered();
  Expected<ExprPtr> parse_unary(bool with_filter);
  Expected<ExprPtr> parse_list();
  Expected<ExprPtr> parse_dict();
  Expected<ExprPtr> parse_postfix(ExprPtr e);
  Expected<ExprPtr> parse_filter_expr(ExprPtr e);
  Expected<std::string> dotted_name();
  Expected<ExprPtr> parse_subscript(ExprPtr e);
  Expected<ExprPtr> parse_subscribed(bool& slice, std::vector<ExprPtr>& parts);
  Expected<ExprPtr> parse_call(ExprPtr target, ExprKind kind, std::string name);
  Status parse_call_args(std::vector<ExprPtr>& args, std::vector<Keyword>& keywords);
  Expected<ExprPtr> parse_test(ExprPtr e);
};

}  // namespace starmesh::jinja
