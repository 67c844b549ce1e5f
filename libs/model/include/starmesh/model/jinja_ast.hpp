#pragma once
// The parsed template: expressions and statements, as jinja2's parser shapes them (the same
// precedence, so `'a' + x | trim` trims x alone and `not x is none` is not (x is none)).
#include <memory>
#include <string>
#include <vector>

#include "starmesh/model/jinja_value.hpp"

namespace starmesh::jinja {

enum class ExprKind : uint8_t {
  literal,    // value
  name,       // name
  list,       // children: the items
  tuple,      // children: the items
  dict,       // children: key, value, key, value, ...
  attribute,  // children[0].name
  item,       // children[0][children[1]]
  slice,      // children[0][children[1]:children[2]:children[3]], each bound may be null
  call,       // children[0](children[1...], keywords)
  filter,     // children[0] | name(children[1...], keywords)
  test,       // children[0] is name(children[1...], keywords)
  negate,     // not children[0]
  minus,      // -children[0]
  plus,       // +children[0]
  binary,     // children[0] op children[1]
  logical_and,
  logical_or,
  compare,     // children[0] compare_ops[0] children[1] compare_ops[1] children[2] ...
  concat,      // children[0] ~ children[1] ~ ...
  conditional  // children[1] if children[0] else children[2] (children[2] may be null)
};

enum class BinaryOp : uint8_t { add, sub, mul, div, floordiv, mod, pow };
enum class CompareOp : uint8_t { eq, ne, lt, le, gt, ge, in, not_in };

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Keyword {
  std::string name;
  ExprPtr value;
};

struct Expr {
  ExprKind kind = ExprKind::literal;
  int line = 0;
  int depth = 1;  // nodes on the longest path down (bounded by Limits::max_depth x 4)
  Value value;
  std::string name;
  std::vector<ExprPtr> children;
  std::vector<Keyword> keywords;
  std::vector<CompareOp> compare_ops;
  BinaryOp op = BinaryOp::add;
};

enum class StmtKind : uint8_t {
  text,        // text
  print,       // {{ expr }}
  if_chain,    // branches (if, elif...), else_body
  for_loop,    // {% for targets in expr if condition %} body {% else %} else_body
  set,         // {% set targets[0] = expr %}, or {% set targets[0].attribute = expr %} on a namespace
  set_block,   // {% set targets[0] %} body {% endset %}
  loop_break,  // {% break %}
  loop_continue,
};

struct Stmt;
struct Branch {
  ExprPtr condition;
  std::vector<Stmt> body;
};

struct Stmt {
  StmtKind kind = StmtKind::text;
  int line = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr condition;  // for_loop's filter, may be null
  std::vector<std::string> targets;
  std::string attribute;  // set on a namespace: targets[0].attribute
  std::vector<Branch> branches;
  std::vector<Stmt> body, else_body;
};

}  // namespace starmesh::jinja
