#include "starmesh/model/jinja_parser.hpp"

#include <string_view>

#include "jinja_expression_parser.hpp"

namespace starmesh::jinja {
namespace {

constexpr std::string_view kUnsupportedTags[] = {"macro",  "call", "filter", "block", "extends",    "include",
                                                 "import", "from", "with",   "raw",   "autoescape", "do"};

// The statements; expressions come from ExpressionParser.
class Parser : public ExpressionParser {
 public:
  using ExpressionParser::ExpressionParser;

  Expected<std::vector<Stmt>> parse_template() {
    SM_ASSIGN(body, subparse({}, 0));
    return body;
  }

 private:
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
          return error("unexpected ", describe_token(t));
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
    if (current().kind != TokenKind::name) return error("expected a tag name, got ", describe_token(current()));
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
    if (!skip_name("in")) return error("expected 'in' in the for tag, got ", describe_token(current()));
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

  int loops_ = 0;
};

}  // namespace

Expected<std::vector<Stmt>> parse(const std::vector<Token>& tokens, const Limits& limits) {
  if (tokens.empty() || tokens.back().kind != TokenKind::end)
    return make_error(ErrorCode::internal, "chat template: token stream without an end");
  return Parser(tokens, limits).parse_template();
}

}  // namespace starmesh::jinja
