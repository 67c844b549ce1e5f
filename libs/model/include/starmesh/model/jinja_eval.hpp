#pragma once
// Runs parsed statements, with jinja2's scoping: the variables passed in are the outermost
// frame, the template's top-level {% set %}s go in a frame above them, and every turn of a for
// loop gets a fresh frame (so a set inside a loop is gone after that turn, which is why
// templates use namespace()); {% if %} opens no frame.
#include <string>
#include <utility>
#include <vector>

#include "starmesh/core/expected.hpp"
#include "starmesh/model/jinja_ast.hpp"
#include "starmesh/model/jinja_value.hpp"

namespace starmesh::jinja {

// Appends the rendering to `out`; errors (invalid_argument) name the line and what went wrong,
// or the Limits bound that stopped it.
Status evaluate(const std::vector<Stmt>& program, std::vector<std::pair<std::string, Value>> variables,
                const Limits& limits, std::string& out);

}  // namespace starmesh::jinja
