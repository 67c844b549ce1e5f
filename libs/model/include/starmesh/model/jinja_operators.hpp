#pragma once
// Python's arithmetic on Jinja values: + - * / // % ** and unary - +. Ints are 64-bit (Python's
// are unbounded: an overflow is an error here, not a big number); / always gives a float; //
// and % floor towards minus infinity; str + str, list + list, str * int and list * int build new
// values within Limits. Undefined operands are an error, as in jinja2.
#include "starmesh/core/expected.hpp"
#include "starmesh/model/jinja_ast.hpp"
#include "starmesh/model/jinja_value.hpp"

namespace starmesh::jinja {

Expected<Value> binary_op(BinaryOp op, const Value& a, const Value& b, Budget& budget);
Expected<Value> unary_op(bool minus, const Value& v);

}  // namespace starmesh::jinja
