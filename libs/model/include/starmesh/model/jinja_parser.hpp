#pragma once
// Tokens -> statements, following jinja2 3.1's grammar for what chat templates use:
//   {{ expr }}, {% if %}/{% elif %}/{% else %}, {% for a[, b] in expr [if cond] %} with
//   {% else %}, {% break %} and {% continue %} (transformers loads jinja2.ext.loopcontrols),
//   {% set x = expr %}, {% set ns.x = expr %}, {% set x %}...{% endset %}, and transformers'
//   {% generation %}...{% endgeneration %} (rendered as its body).
//   Expressions: literals (strings, ints, floats, true/false/none, lists, tuples, dicts), names,
//   .attribute, [index], [a:b:c], calls with keyword arguments, filters, `is` tests, not/and/or,
//   == != < <= > >= in, not in, + - * / // % ** ~, `a if cond else b`.
// Everything else (macros, call blocks, includes, {% raw %}, *args) is refused by name. Nesting
// is bounded by Limits::max_depth (blocks and brackets) and expression trees by 4x that.
#include <vector>

#include "starmesh/core/expected.hpp"
#include "starmesh/model/jinja_ast.hpp"
#include "starmesh/model/jinja_lexer.hpp"

namespace starmesh::jinja {

Expected<std::vector<Stmt>> parse(const std::vector<Token>& tokens, const Limits& limits);

}  // namespace starmesh::jinja
