#include "jinja_expression_parser.hpp"

namespace starmesh::jinja {

std::string describe_token(const Token& t) {
  switch (t.kind) {
    case TokenKind::end:
      return "end of template";
    case TokenKind::data:
      return "template text";
    case TokenKind::string:
      return "string literal";
    default:
      return "'" + t.text + "'";
  }
}

bool ExpressionParser::is_tuple_end(const std::vector<std::string_view>& extra_end_names) const {
  const TokenKind k = current().kind;
  if (k == TokenKind::variable_end || k == TokenKind::block_end || k == TokenKind::end || is_op(")")) return true;
  return at_end_name(extra_end_names);
}

// Comma-separated expressions: one is itself, several (or a trailing comma) make a tuple.
Expected<ExprPtr> ExpressionParser::parse_tuple(bool simplified, bool with_condexpr,
                                                const std::vector<std::string_view>& extra_end,
                                                bool explicit_parentheses) {
  const int line = current().line;
  std::vector<ExprPtr> items;
  bool is_tuple = false;
  while (true) {
    if (!items.empty()) SM_TRY(expect_op(","));
    if (is_tuple_end(extra_end)) break;
    auto item = simplified ? parse_primary() : parse_expression(with_condexpr);
    if (!item) return item.error();
    items.push_back(std::move(*item));
    if (!is_op(",")) break;
    is_tuple = true;
  }
  if (!is_tuple) {
    if (!items.empty()) return std::move(items[0]);
    if (!explicit_parentheses) return error("expected an expression, got ", describe_token(current()));
  }
  return node(ExprKind::tuple, line, std::move(items));
}

Expected<ExprPtr> ExpressionParser::parse_expression(bool with_condexpr) {
  return with_condexpr ? parse_condexpr() : parse_or();
}

Expected<ExprPtr> ExpressionParser::parse_condexpr() {
  DepthGuard guard(*this);
  SM_TRY(guard.check());
  const int line = current().line;
  SM_ASSIGN(expr, parse_or());
  while (skip_name("if")) {
    SM_ASSIGN(condition, parse_or());
    ExprPtr otherwise;
    if (skip_name("else")) {
      SM_ASSIGN(e, parse_condexpr());
      otherwise = std::move(e);
    }
    std::vector<ExprPtr> parts;
    parts.push_back(std::move(condition));
    parts.push_back(std::move(expr));
    parts.push_back(std::move(otherwise));
    SM_ASSIGN(cond, node(ExprKind::conditional, line, std::move(parts)));
    expr = std::move(cond);
  }
  return expr;
}

Expected<ExprPtr> ExpressionParser::binary_node(ExprKind kind, int line, ExprPtr left, ExprPtr right) {
  std::vector<ExprPtr> parts;
  parts.push_back(std::move(left));
  parts.push_back(std::move(right));
  return node(kind, line, std::move(parts));
}

Expected<ExprPtr> ExpressionParser::parse_or() {
  SM_ASSIGN(left, parse_and());
  while (is_name("or")) {
    const int line = next().line;
    SM_ASSIGN(right, parse_and());
    SM_ASSIGN(both, binary_node(ExprKind::logical_or, line, std::move(left), std::move(right)));
    left = std::move(both);
  }
  return left;
}

Expected<ExprPtr> ExpressionParser::parse_and() {
  SM_ASSIGN(left, parse_not());
  while (is_name("and")) {
    const int line = next().line;
    SM_ASSIGN(right, parse_not());
    SM_ASSIGN(both, binary_node(ExprKind::logical_and, line, std::move(left), std::move(right)));
    left = std::move(both);
  }
  return left;
}

Expected<ExprPtr> ExpressionParser::parse_not() {
  if (!is_name("not")) return parse_compare();
  DepthGuard guard(*this);
  SM_TRY(guard.check());
  const int line = next().line;
  SM_ASSIGN(operand, parse_not());
  std::vector<ExprPtr> parts;
  parts.push_back(std::move(operand));
  return node(ExprKind::negate, line, std::move(parts));
}

Expected<ExprPtr> ExpressionParser::parse_compare() {
  const int line = current().line;
  SM_ASSIGN(first, parse_math1());
  std::vector<ExprPtr> operands;
  std::vector<CompareOp> ops;
  operands.push_back(std::move(first));
  while (true) {
    std::optional<CompareOp> op;
    const std::string& t = current().text;
    if (current().kind == TokenKind::op) {
      if (t == "==") op = CompareOp::eq;
      if (t == "!=") op = CompareOp::ne;
      if (t == "<") op = CompareOp::lt;
      if (t == "<=") op = CompareOp::le;
      if (t == ">") op = CompareOp::gt;
      if (t == ">=") op = CompareOp::ge;
      if (op) next();
    } else if (is_name("in")) {
      next();
      op = CompareOp::in;
    } else if (is_name("not") && look().kind == TokenKind::name && look().text == "in") {
      next();
      next();
      op = CompareOp::not_in;
    }
    if (!op) break;
    SM_ASSIGN(operand, parse_math1());
    operands.push_back(std::move(operand));
    ops.push_back(*op);
  }
  if (ops.empty()) return std::move(operands[0]);
  SM_ASSIGN(e, node(ExprKind::compare, line, std::move(operands)));
  e->compare_ops = std::move(ops);
  return e;
}

// Left-associative binary operators `ops` over operands parsed by `operand`.
template <class Operand>
Expected<ExprPtr> ExpressionParser::parse_binary(std::initializer_list<std::pair<std::string_view, BinaryOp>> ops,
                                                 Operand operand) {
  SM_ASSIGN(left, (this->*operand)());
  while (true) {
    const std::pair<std::string_view, BinaryOp>* found = nullptr;
    for (const auto& candidate : ops)
      if (is_op(candidate.first)) found = &candidate;
    if (!found) return left;
    const int line = next().line;
    SM_ASSIGN(right, (this->*operand)());
    SM_ASSIGN(both, binary_node(ExprKind::binary, line, std::move(left), std::move(right)));
    both->op = found->second;
    left = std::move(both);
  }
}

Expected<ExprPtr> ExpressionParser::parse_math1() {
  return parse_binary({{"+", BinaryOp::add}, {"-", BinaryOp::sub}}, &ExpressionParser::parse_concat);
}

Expected<ExprPtr> ExpressionParser::parse_concat() {
  const int line = current().line;
  std::vector<ExprPtr> parts;
  SM_ASSIGN(first, parse_math2());
  parts.push_back(std::move(first));
  while (skip_op("~")) {
    SM_ASSIGN(part, parse_math2());
    parts.push_back(std::move(part));
  }
  if (parts.size() == 1) return std::move(parts[0]);
  return node(ExprKind::concat, line, std::move(parts));
}

Expected<ExprPtr> ExpressionParser::parse_math2() {
  return parse_binary({{"*", BinaryOp::mul}, {"/", BinaryOp::div}, {"//", BinaryOp::floordiv}, {"%", BinaryOp::mod}},
                      &ExpressionParser::parse_pow);
}

Expected<ExprPtr> ExpressionParser::parse_pow() {
  return parse_binary({{"**", BinaryOp::pow}}, &ExpressionParser::parse_unary_filtered);
}

Expected<ExprPtr> ExpressionParser::parse_unary_filtered() { return parse_unary(true); }

// jinja2's quirk kept: `-x | f` is f(-x), and `-2 ** 2` is (-2) ** 2.
Expected<ExprPtr> ExpressionParser::parse_unary(bool with_filter) {
  DepthGuard guard(*this);
  SM_TRY(guard.check());
  const int line = current().line;
  ExprPtr e;
  if (is_op("-") || is_op("+")) {
    const ExprKind kind = next().text == "-" ? ExprKind::minus : ExprKind::plus;
    SM_ASSIGN(operand, parse_unary(false));
    std::vector<ExprPtr> parts;
    parts.push_back(std::move(operand));
    SM_ASSIGN(n, node(kind, line, std::move(parts)));
    e = std::move(n);
  } else {
    SM_ASSIGN(primary, parse_primary());
    e = std::move(primary);
  }
  SM_ASSIGN(post, parse_postfix(std::move(e)));
  if (!with_filter) return post;
  return parse_filter_expr(std::move(post));
}

Expected<ExprPtr> ExpressionParser::parse_primary() {
  const Token& t = current();
  const int line = t.line;
  switch (t.kind) {
    case TokenKind::name: {
      next();
      if (t.text == "true" || t.text == "True") return literal(Value::boolean(true), line);
      if (t.text == "false" || t.text == "False") return literal(Value::boolean(false), line);
      if (t.text == "none" || t.text == "None") return literal(Value::none(), line);
      SM_ASSIGN(e, node(ExprKind::name, line));
      e->name = t.text;
      return e;
    }
    case TokenKind::string: {
      std::string text;
      while (current().kind == TokenKind::string) text += next().text;  // 'a' 'b' is 'ab'
      if (text.size() > limits_.max_output_bytes)
        return error("a string literal passes ", limits_.max_output_bytes, " bytes (the max_output_bytes bound)");
      return literal(Value::string(std::move(text)), line);
    }
    case TokenKind::integer:
      next();
      return literal(Value::integer(t.int_value), line);
    case TokenKind::floating:
      next();
      return literal(Value::floating(t.float_value), line);
    case TokenKind::op:
      if (t.text == "(") {
        next();
        SM_ASSIGN(inner, parse_tuple(false, true, {}, true));
        SM_TRY(expect_op(")"));
        return inner;
      }
      if (t.text == "[") return parse_list();
      if (t.text == "{") return parse_dict();
      break;
    default:
      break;
  }
  return error("unexpected ", describe_token(t));
}

Expected<ExprPtr> ExpressionParser::parse_list() {
  const int line = next().line;
  std::vector<ExprPtr> items;
  while (!is_op("]")) {
    if (!items.empty()) SM_TRY(expect_op(","));
    if (is_op("]")) break;
    SM_ASSIGN(item, parse_expression(true));
    items.push_back(std::move(item));
  }
  SM_TRY(expect_op("]"));
  return node(ExprKind::list, line, std::move(items));
}

Expected<ExprPtr> ExpressionParser::parse_dict() {
  const int line = next().line;
  std::vector<ExprPtr> items;
  while (!is_op("}")) {
    if (!items.empty()) SM_TRY(expect_op(","));
    if (is_op("}")) break;
    SM_ASSIGN(key, parse_expression(true));
    SM_TRY(expect_op(":"));
    SM_ASSIGN(value, parse_expression(true));
    items.push_back(std::move(key));
    items.push_back(std::move(value));
  }
  SM_TRY(expect_op("}"));
  return node(ExprKind::dict, line, std::move(items));
}

Expected<ExprPtr> ExpressionParser::parse_postfix(ExprPtr e) {
  while (true) {
    if (is_op(".") || is_op("[")) {
      SM_ASSIGN(sub, parse_subscript(std::move(e)));
      e = std::move(sub);
    } else if (is_op("(")) {
      SM_ASSIGN(call, parse_call(std::move(e), ExprKind::call, ""));
      e = std::move(call);
    } else {
      return e;
    }
  }
}

Expected<ExprPtr> ExpressionParser::parse_filter_expr(ExprPtr e) {
  while (true) {
    if (is_op("|")) {
      while (skip_op("|")) {
        SM_ASSIGN(name, dotted_name());
        SM_ASSIGN(filtered, parse_call(std::move(e), ExprKind::filter, name));
        e = std::move(filtered);
      }
    } else if (is_name("is")) {
      SM_ASSIGN(tested, parse_test(std::move(e)));
      e = std::move(tested);
    } else if (is_op("(")) {
      SM_ASSIGN(call, parse_call(std::move(e), ExprKind::call, ""));
      e = std::move(call);
    } else {
      return e;
    }
  }
}

Expected<std::string> ExpressionParser::dotted_name() {
  SM_ASSIGN(name, expect_name());
  while (skip_op(".")) {
    SM_ASSIGN(part, expect_name());
    name += "." + part;
  }
  return name;
}

Expected<ExprPtr> ExpressionParser::parse_subscript(ExprPtr e) {
  const Token& t = next();
  std::vector<ExprPtr> parts;
  parts.push_back(std::move(e));
  if (t.text == ".") {
    const Token& attr = next();
    if (attr.kind == TokenKind::name) {
      SM_ASSIGN(n, node(ExprKind::attribute, t.line, std::move(parts)));
      n->name = attr.text;
      return n;
    }
    if (attr.kind != TokenKind::integer) return error("expected a name or number after '.'");
    SM_ASSIGN(index, literal(Value::integer(attr.int_value), attr.line));
    parts.push_back(std::move(index));
    return node(ExprKind::item, t.line, std::move(parts));
  }
  // '[': one index or slice; several make a tuple index (which finds nothing: undefined)
  std::vector<ExprPtr> args;
  bool slice = false;
  while (!is_op("]")) {
    if (!args.empty()) SM_TRY(expect_op(","));
    SM_ASSIGN(arg, parse_subscribed(slice, parts));
    if (arg) args.push_back(std::move(arg));
    if (slice) break;
  }
  SM_TRY(expect_op("]"));
  if (slice) return node(ExprKind::slice, t.line, std::move(parts));
  if (args.empty()) return error("expected an index between '[' and ']'");
  if (args.size() == 1) {
    parts.push_back(std::move(args[0]));
  } else {
    SM_ASSIGN(tuple, node(ExprKind::tuple, t.line, std::move(args)));
    parts.push_back(std::move(tuple));
  }
  return node(ExprKind::item, t.line, std::move(parts));
}

// One index expression, or a slice start:stop:step (its bounds appended to `parts`).
Expected<ExprPtr> ExpressionParser::parse_subscribed(bool& slice, std::vector<ExprPtr>& parts) {
  ExprPtr start;
  if (!is_op(":")) {
    SM_ASSIGN(index, parse_expression(true));
    if (!is_op(":")) return index;
    start = std::move(index);
  }
  next();  // ':'
  slice = true;
  parts.push_back(std::move(start));
  ExprPtr stop, step;
  if (!is_op(":") && !is_op("]") && !is_op(",")) {
    SM_ASSIGN(e, parse_expression(true));
    stop = std::move(e);
  }
  if (skip_op(":") && !is_op("]") && !is_op(",")) {
    SM_ASSIGN(e, parse_expression(true));
    step = std::move(e);
  }
  parts.push_back(std::move(stop));
  parts.push_back(std::move(step));
  return ExprPtr();
}

// `target(args)` for calls, filters (arguments optional) and tests.
Expected<ExprPtr> ExpressionParser::parse_call(ExprPtr target, ExprKind kind, std::string name) {
  const int line = current().line;
  std::vector<ExprPtr> parts;
  parts.push_back(std::move(target));
  std::vector<Keyword> keywords;
  if (kind == ExprKind::call || is_op("(")) SM_TRY(parse_call_args(parts, keywords));
  SM_ASSIGN(e, node(kind, line, std::move(parts)));
  for (const Keyword& k : keywords) e->depth = std::max(e->depth, k.value->depth + 1);
  if (e->depth > 4 * limits_.max_depth)
    return error("an expression nests deeper than ", 4 * limits_.max_depth, " (4 x the max_depth bound)");
  e->keywords = std::move(keywords);
  e->name = std::move(name);
  return e;
}

Status ExpressionParser::parse_call_args(std::vector<ExprPtr>& args, std::vector<Keyword>& keywords) {
  SM_TRY(expect_op("("));
  bool need_comma = false;
  while (!is_op(")")) {
    if (need_comma) {
      SM_TRY(expect_op(","));
      if (is_op(")")) break;
    }
    if (is_op("*") || is_op("**")) return error("*args and **kwargs are not supported in chat templates");
    if (current().kind == TokenKind::name && look().kind == TokenKind::op && look().text == "=") {
      std::string key = next().text;
      next();
      SM_ASSIGN(value, parse_expression(true));
      keywords.push_back(Keyword{std::move(key), std::move(value)});
    } else {
      if (!keywords.empty()) return error("a positional argument follows a keyword argument");
      SM_ASSIGN(value, parse_expression(true));
      args.push_back(std::move(value));
    }
    need_comma = true;
  }
  return expect_op(")");
}

Expected<ExprPtr> ExpressionParser::parse_test(ExprPtr e) {
  const int line = next().line;  // 'is'
  const bool negated = skip_name("not");
  SM_ASSIGN(name, dotted_name());
  ExprPtr tested;
  const Token& t = current();
  const bool bare_argument =
      (t.kind == TokenKind::name || t.kind == TokenKind::string || t.kind == TokenKind::integer ||
       t.kind == TokenKind::floating || is_op("[") || is_op("{")) &&
      !is_name("else") && !is_name("or") && !is_name("and");
  if (is_op("(")) {
    SM_ASSIGN(call, parse_call(std::move(e), ExprKind::test, name));
    tested = std::move(call);
  } else if (bare_argument) {  // `x is divisibleby 3`, `x is equalto y`
    if (is_name("is")) return error("tests cannot be chained with 'is'");
    SM_ASSIGN(primary, parse_primary());
    SM_ASSIGN(arg, parse_postfix(std::move(primary)));
    std::vector<ExprPtr> parts;
    parts.push_back(std::move(e));
    parts.push_back(std::move(arg));
    SM_ASSIGN(n, node(ExprKind::test, line, std::move(parts)));
    n->name = name;
    tested = std::move(n);
  } else {
    std::vector<ExprPtr> parts;
    parts.push_back(std::move(e));
    SM_ASSIGN(n, node(ExprKind::test, line, std::move(parts)));
    n->name = name;
    tested = std::move(n);
  }
  if (!negated) return tested;
  std::vector<ExprPtr> parts;
  parts.push_back(std::move(tested));
  return node(ExprKind::negate, line, std::move(parts));
}

}  // namespace starmesh::jinja
