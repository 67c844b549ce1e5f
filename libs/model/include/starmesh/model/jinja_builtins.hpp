#pragma once
// What a template can call: filters (x | name), tests (x is name), attributes and methods
// (x.name, x[key], x.strip()), and the global functions. Each behaves as jinja2 3.1 (with
// transformers' tojson) does on the same values; the lists below are all there is.
//   filters: abs, count, d, default, first, float, int, items, join, last, length, list, lower,
//            map, reject, rejectattr, replace, safe, select, selectattr, string, tojson, trim, upper
//   tests:   boolean, callable, defined, divisibleby, eq, equalto, even, false, float, ge,
//            greaterthan, gt, in, integer, iterable, le, lessthan, lt, mapping, ne, none, number,
//            odd, sequence, string, true, undefined, ==, !=, <, <=, >, >=
//   methods: str: endswith, join, lower, lstrip, replace, rstrip, split, startswith, strip, upper;
//            dict: get, items, keys, values
//   globals: dict, namespace, raise_exception (an invalid_argument error), range
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "starmesh/core/expected.hpp"
#include "starmesh/model/jinja_value.hpp"

namespace starmesh::jinja {

bool has_filter(std::string_view name);
bool has_test(std::string_view name);

Expected<Value> apply_filter(std::string_view name, const Value& input, const CallArgs& args, Budget& budget);
Expected<bool> apply_test(std::string_view name, const Value& input, const CallArgs& args, Budget& budget);

// obj.name: a method bound to obj, else the dict item or namespace attribute, else undefined.
Expected<Value> get_attribute(const Value& obj, const std::string& name);
// obj[key]: list and string indices (negative from the end), dict keys; else undefined.
Expected<Value> get_item(const Value& obj, const Value& key);
// obj[start:stop:step] on lists and strings, with Python's clamping; bounds are ints or none.
Expected<Value> get_slice(const Value& obj, const Value& start, const Value& stop, const Value& step);

// Python's `item in container`: substrings, list elements, dict keys; undefined contains
// nothing; other containers are an error.
Expected<bool> contains(const Value& container, const Value& item);

// The elements a for loop visits: list items, dict keys, a string's characters; undefined
// gives none. Anything else is an error ("'int' object is not iterable").
Expected<std::vector<Value>> iterate(const Value& v, Budget& budget);

std::vector<std::pair<std::string, Value>> default_globals();

// Binds call arguments to parameter names as Python does (positionals first, then keywords);
// unknown or repeated names and extra positionals are errors naming `callee`.
Expected<std::vector<std::optional<Value>>> bind_args(std::string_view callee, const CallArgs& args,
                                                      std::initializer_list<std::string_view> params);

// Errors for the checks shared by the evaluator and the builtins.
Status check_string_size(size_t bytes, const Limits& limits);
Status check_items(size_t items, const Limits& limits);
Error undefined_error(const Value& v);

}  // namespace starmesh::jinja
