#include "starmesh/model/jinja_parser.hpp"

#include <algorithm>
#include <initializer_list>
#include <string_view>

namespace starmesh::jinja {
namespace {

constexpr std::string_view kUnsupportedTags[] = {"macro",  "call", "filter", "block", "extends",    "include",
                                                 "import", "from", "with",   "raw",   "autoescape", "do"};

std::string describe(const Token& t) {
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

class Parser {
 public:
  Parser(const std::vector<Token>& tokens, const Limits& limits) : tokens_(tokens), limits_(limits) {}

  Expected<std::vector<Stmt>> parse_template() {
    SM_ASSIGN(body, subparse({}, 0));
    return body;
  }

 private:
  // Depth of recursive descent (blocks in blocks, parentheses, `not not`, `- -`).
  class DepthGuard {
   public:
    explicit DepthGuard(Parser& p) : p_(p) { ++p_.depth_; }
    ~DepthGuard() { --p_.depth_; }
    Status check() const {
      if (p_.depth_ > p_.limits_.max_depth)
        return p_.error("the template nests deeper than ", p_.limits_.max_depth, " (the max_depth bound)");
      return Status::ok();
    }

   private:
    Parser& p_;
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
    if (!skip_op(value)) return error("expected '", value, "', got ", describe(current()));
    return Status::ok();
  }
  Status expect_kind(TokenKind kind, std::string_view what) {
    if (current().kind != kind) return error("expected ", what, ", got ", describe(current()));
    next();
    return Status::ok();
  }
  Expected<std::string> expect_name() {
    if (current().kind != TokenKind::name) return error("expected a name, got ", describe(current()));
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

  // ---- statements ----

  bool at_end_name(const std::vector<std::string_view>& end_names) const {
    return current().kind == TokenKind::name &&
           std::find(end_names.begin(), end_names.end(), current().text) != end_names.end();
  }

  // Statements up to a block starting with one of end_names (left as the current token); the
  // block that needs them opened on line `opened`.
  Expected<std::vector<Stmt>> subparse(const std::vector<std::string_view>& end_names, int opened) {
    DepthGuard guard(*this);
    SM_TRY(guard.check());
    std::vector<Stmt> body;
    while (true) {
      const Token& t = current();
      switch (t.kind) {
        case TokenKind::data: {
          Stmt s;
          s.kind = StmtKind::text;
          s.line = t.line;
          s.text = t.text;
          body.push_back(std::move(s));
          next();
          break;
        }
        case TokenKind::variable_begin: {
          next();
          Stmt s;
          s.kind = StmtKind::print;
          s.line = t.line;
          SM_ASSIGN(e, parse_tuple(false, true, {}, false));
          s.expr = std::move(e);
          SM_TRY(expect_kind(TokenKind::variable_end, "'}}'"));
          body.push_back(std::move(s));
          break;
        }
        case TokenKind::block_begin:
          next();
          if (at_end_name(end_names)) return body;
          SM_TRY(parse_statement(body));
          SM_TRY(expect_kind(TokenKind::block_end, "'%}'"));
          break;
        case TokenKind::end:
          if (!end_names.empty()) {
            std::string names;
            for (auto n : end_names) names += (names.empty() ? "'" : " or '") + std::string(n) + "'";
            return error("unexpected end of template: the block opened on line ", opened, " is not closed (expected ",
                         names, ")");
          }
          return body;
        default:
          return error("unexpected ", describe(t));
      }
    }
  }

  // `:`? `%}` body, up to one of end_names; drop_needle consumes that name.
  Expected<std::vector<Stmt>> parse_statements(const std::vector<std::string_view>& end_names, bool drop_needle,
                                               int opened) {
    skip_op(":");
    SM_TRY(expect_kind(TokenKind::block_end, "'%}'"));
    SM_ASSIGN(body, subparse(end_names, opened));
    if (drop_needle) next();
    return body;
  }

  Status parse_statement(std::vector<Stmt>& out) {
    if (current().kind != TokenKind::name) return error("expected a tag name, got ", describe(current()));
    const std::string tag = current().text;
    const int line = current().line;
    if (tag == "if") return parse_if(out);
    if (tag == "for") return parse_for(out);
    if (tag == "set") return parse_set(out);
    if (tag == "break" || tag == "continue") {
      if (loops_ == 0) return error("'", tag, "' outside a for loop");
      next();
      Stmt s;
      s.kind = tag == "break" ? StmtKind::loop_break : StmtKind::loop_continue;
      s.line = line;
      out.push_back(std::move(s));
      return Status::ok();
    }
    if (tag == "generation") {  // transformers' assistant-mask marker: renders as its body
      next();
      SM_ASSIGN(body, parse_statements({"endgeneration"}, true, line));
      for (Stmt& s : body) out.push_back(std::move(s));
      return Status::ok();
    }
    for (std::string_view unsupported : kUnsupportedTags)
      if (tag == unsupported) return error("the {% ", tag, " %} tag is not supported in chat templates");
    return error("unknown tag '", tag, "'");
  }

  Status parse_if(std::vector<Stmt>& out) {
    Stmt s;
    s.kind = StmtKind::if_chain;
    s.line = current().line;
    next();
    while (true) {
      Branch branch;
      SM_ASSIGN(condition, parse_tuple(false, false, {}, false));
      branch.condition = std::move(condition);
      SM_ASSIGN(body, parse_statements({"elif", "else", "endif"}, false, s.line));
      branch.body = std::move(body);
      s.branches.push_back(std::move(branch));
      const std::string ended = next().text;
      if (ended == "elif") continue;
      if (ended == "else") {
        SM_ASSIGN(else_body, parse_statements({"endif"}, true, s.line));
        s.else_body = std::move(else_body);
      }
      break;
    }
    out.push_back(std::move(s));
    return Status::ok();
  }

  Status parse_for(std::vector<Stmt>& out) {
    Stmt s;
    s.kind = StmtKind::for_loop;
    s.line = current().line;
    next();
    while (true) {
      SM_ASSIGN(target, expect_name());
      s.targets.push_back(std::move(target));
      if (!skip_op(",") || is_name("in")) break;
    }
    if (!skip_name("in")) return error("expected 'in' in the for tag, got ", describe(current()));
    SM_ASSIGN(iterable, parse_tuple(false, false, {"recursive"}, false));
    s.expr = std::move(iterable);
    if (skip_name("if")) {
      SM_ASSIGN(condition, parse_expression(true));
      s.condition = std::move(condition);
    }
    if (is_name("recursive")) return error("recursive for loops are not supported in chat templates");
    ++loops_;
    auto body = parse_statements({"endfor", "else"}, false, s.line);
    --loops_;
    if (!body) return body.error();
    s.body = std::move(*body);
    if (next().text == "else") {
      SM_ASSIGN(else_body, parse_statements({"endfor"}, true, s.line));
      s.else_body = std::move(else_body);
    }
    out.push_back(std::move(s));
    return Status::ok();
  }

  Status parse_set(std::vector<Stmt>& out) {
    Stmt s;
    s.line = current().line;
    next();
    SM_ASSIGN(target, expect_name());
    s.targets.push_back(std::move(target));
    if (skip_op(".")) {
      SM_ASSIGN(attribute, expect_name());
      s.attribute = std::move(attribute);
    }
    if (is_op(",")) return error("{% set %} with several targets is not supported in chat templates");
    if (skip_op("=")) {
      s.kind = StmtKind::set;
      SM_ASSIGN(value, parse_tuple(false, true, {}, false));
      s.expr = std::move(value);
    } else {
      if (is_op("|")) return error("a filtered {% set %} block is not supported in chat templates");
      if (!s.attribute.empty()) return error("a {% set %} block cannot assign to a namespace attribute");
      s.kind = StmtKind::set_block;
      SM_ASSIGN(body, parse_statements({"endset"}, true, s.line));
      s.body = std::move(body);
    }
    out.push_back(std::move(s));
    return Status::ok();
  }

  // ---- expressions ----

  bool is_tuple_end(const std::vector<std::string_view>& extra_end_names) const {
    const TokenKind k = current().kind;
    if (k == TokenKind::variable_end || k == TokenKind::block_end || k == TokenKind::end || is_op(")")) return true;
    return at_end_name(extra_end_names);
  }

  // Comma-separated expressions: one is itself, several (or a trailing comma) make a tuple.
  Expected<ExprPtr> parse_tuple(bool simplified, bool with_condexpr, const std::vector<std::string_view>& extra_end,
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
      if (!explicit_parentheses) return error("expected an expression, got ", describe(current()));
    }
    return node(ExprKind::tuple, line, std::move(items));
  }

  Expected<ExprPtr> parse_expression(bool with_condexpr) { return with_condexpr ? parse_condexpr() : parse_or(); }

  Expected<ExprPtr> parse_condexpr() {
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

  Expected<ExprPtr> binary_node(ExprKind kind, int line, ExprPtr left, ExprPtr right) {
    std::vector<ExprPtr> parts;
    parts.push_back(std::move(left));
    parts.push_back(std::move(right));
    return node(kind, line, std::move(parts));
  }

  Expected<ExprPtr> parse_or() {
    SM_ASSIGN(left, parse_and());
    while (is_name("or")) {
      const int line = next().line;
      SM_ASSIGN(right, parse_and());
      SM_ASSIGN(both, binary_node(ExprKind::logical_or, line, std::move(left), std::move(right)));
      left = std::move(both);
    }
    return left;
  }

  Expected<ExprPtr> parse_and() {
    SM_ASSIGN(left, parse_not());
    while (is_name("and")) {
      const int line = next().line;
      SM_ASSIGN(right, parse_not());
      SM_ASSIGN(both, binary_node(ExprKind::logical_and, line, std::move(left), std::move(right)));
      left = std::move(both);
    }
    return left;
  }

  Expected<ExprPtr> parse_not() {
    if (!is_name("not")) return parse_compare();
    DepthGuard guard(*this);
    SM_TRY(guard.check());
    const int line = next().line;
    SM_ASSIGN(operand, parse_not());
    std::vector<ExprPtr> parts;
    parts.push_back(std::move(operand));
    return node(ExprKind::negate, line, std::move(parts));
  }

  Expected<ExprPtr> parse_compare() {
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
  Expected<ExprPtr> parse_binary(std::initializer_list<std::pair<std::string_view, BinaryOp>> ops, Operand operand) {
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

  Expected<ExprPtr> parse_math1() {
    return parse_binary({{"+", BinaryOp::add}, {"-", BinaryOp::sub}}, &Parser::parse_concat);
  }

  Expected<ExprPtr> parse_concat() {
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

  Expected<ExprPtr> parse_math2() {
    return parse_binary({{"*", BinaryOp::mul}, {"/", BinaryOp::div}, {"//", BinaryOp::floordiv}, {"%", BinaryOp::mod}},
                        &Parser::parse_pow);
  }

  Expected<ExprPtr> parse_pow() { return parse_binary({{"**", BinaryOp::pow}}, &Parser::parse_unary_filtered); }

  Expected<ExprPtr> parse_unary_filtered() { return parse_unary(true); }

  // jinja2's quirk kept: `-x | f` is f(-x), and `-2 ** 2` is (-2) ** 2.
  Expected<ExprPtr> parse_unary(bool with_filter) {
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

  Expected<ExprPtr> parse_primary() {
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
    return error("unexpected ", describe(t));
  }

  Expected<ExprPtr> parse_list() {
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

  Expected<ExprPtr> parse_dict() {
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

  Expected<ExprPtr> parse_postfix(ExprPtr e) {
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

  Expected<ExprPtr> parse_filter_expr(ExprPtr e) {
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

  Expected<std::string> dotted_name() {
    SM_ASSIGN(name, expect_name());
    while (skip_op(".")) {
      SM_ASSIGN(part, expect_name());
      name += "." + part;
    }
    return name;
  }

  Expected<ExprPtr> parse_subscript(ExprPtr e) {
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
  Expected<ExprPtr> parse_subscribed(bool& slice, std::vector<ExprPtr>& parts) {
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
  Expected<ExprPtr> parse_call(ExprPtr target, ExprKind kind, std::string name) {
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

  Status parse_call_args(std::vector<ExprPtr>& args, std::vector<Keyword>& keywords) {
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

  Expected<ExprPtr> parse_test(ExprPtr e) {
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

  const std::vector<Token>& tokens_;
  const Limits& limits_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loops_ = 0;
};

}  // namespace

Expected<std::vector<Stmt>> parse(const std::vector<Token>& tokens, const Limits& limits) {
  if (tokens.empty() || tokens.back().kind != TokenKind::end)
    return make_error(ErrorCode::internal, "chat template: token stream without an end");
  return Parser(tokens, limits).parse_template();
}

}  // namespace starmesh::jinja
