// Filters and tests (jinja_builtins.hpp), each as jinja2 3.1 defines it; tojson is
// transformers' (json.dumps with ensure_ascii=False, no HTML escaping).
#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

#include "starmesh/model/jinja_builtins.hpp"
#include "starmesh/model/jinja_format.hpp"
#include "starmesh/model/jinja_operators.hpp"
#include "starmesh/model/jinja_text.hpp"

namespace starmesh::jinja {
namespace {

using FilterFn = Expected<Value> (*)(const Value&, const CallArgs&, Budget&);
using TestFn = Expected<bool> (*)(const Value&, const CallArgs&, Budget&);

Error type_error(std::string_view what) { return make_error(ErrorCode::invalid_argument, "chat template: ", what); }

Expected<std::string> text_of(const Value& v, Budget& budget) { return to_str(v, budget.limits().max_output_bytes); }

// Python's int(text, base) for base 10 or 16/8/2 (an optional matching prefix), else nothing.
std::optional<int64_t> parse_py_int(std::string_view text, int base) {
  std::string_view s = py_strip(text, true, true);
  bool negative = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) negative = s[0] == '-', s.remove_prefix(1);
  if (base != 10 && s.size() > 2 && s[0] == '0') {
    const char p = char(s[1] | 0x20);
    if ((base == 16 && p == 'x') || (base == 8 && p == 'o') || (base == 2 && p == 'b')) s.remove_prefix(2);
  }
  std::string digits;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_' && i > 0 && i + 1 < s.size() && s[i - 1] != '_') continue;
    digits += s[i];
  }
  if (digits.empty()) return std::nullopt;
  uint64_t magnitude = 0;
  const auto res = std::from_chars(digits.data(), digits.data() + digits.size(), magnitude, base);
  if (res.ec != std::errc() || res.ptr != digits.data() + digits.size()) return std::nullopt;
  if (magnitude > uint64_t(std::numeric_limits<int64_t>::max()) + (negative ? 1 : 0)) return std::nullopt;
  return negative ? int64_t(0 - magnitude) : int64_t(magnitude);
}

// Python's float(text), else nothing.
std::optional<double> parse_py_float(std::string_view text) {
  std::string_view s = py_strip(text, true, true);
  bool negative = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) negative = s[0] == '-', s.remove_prefix(1);
  const std::string lower = ascii_lower(s);
  if (lower == "inf" || lower == "infinity") return negative ? -HUGE_VAL : HUGE_VAL;
  if (lower == "nan") return std::nan("");
  std::string digits;
  for (size_t i = 0; i < s.size(); ++i) {
    const bool between_digits =
        i > 0 && i + 1 < s.size() && std::isdigit((unsigned char)s[i - 1]) && std::isdigit((unsigned char)s[i + 1]);
    if (s[i] == '_' && between_digits) continue;
    digits += s[i];
  }
  if (digits.empty() || digits.find_first_of("iInN") != std::string::npos) return std::nullopt;
  double d = 0;
  const auto res = std::from_chars(digits.data(), digits.data() + digits.size(), d);
  if (res.ptr != digits.data() + digits.size()) return std::nullopt;
  if (res.ec == std::errc::result_out_of_range) {  // Python: overflow is inf, underflow 0.0
    const size_t e = digits.find_first_of("eE");
    d = e != std::string::npos && e + 1 < digits.size() && digits[e + 1] == '-' ? 0.0 : HUGE_VAL;
  }
  return negative ? -d : d;
}

// x.a.b or x.0 as jinja2's attribute getters read a dotted path (items first, then attributes).
Expected<Value> lookup_path(const Value& v, const std::string& path) {
  Value current = v;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    int64_t index = 0;
    const auto res = std::from_chars(part.data(), part.data() + part.size(), index);
    const bool numeric = !part.empty() && res.ec == std::errc() && res.ptr == part.data() + part.size();
    SM_ASSIGN(next, get_item(current, numeric ? Value::integer(index) : Value::string(part)));
    current = std::move(next);
    if (dot == std::string::npos) return current;
    start = dot + 1;
  }
}

// ---- filters ----

Expected<Value> filter_abs(const Value& v, const CallArgs&, Budget&) {
  if (v.is(Value::Kind::floating)) return Value::floating(std::fabs(v.as_float()));
  if (!v.is_number()) return type_error("abs: bad operand type " + std::string(type_name(v)));
  if (v.as_int() == std::numeric_limits<int64_t>::min()) return type_error("abs: integer overflow");
  return Value::integer(v.as_int() < 0 ? -v.as_int() : v.as_int());
}

Expected<Value> filter_length(const Value& v, const CallArgs&, Budget& budget) {
  if (v.is_string()) SM_TRY(budget.charge(v.as_string().size() / 256));  // counting reads the text
  switch (v.kind()) {
    case Value::Kind::undefined:
      return Value::integer(0);
    case Value::Kind::string:
      return Value::integer(int64_t(code_point_count(v.as_string())));
    case Value::Kind::list:
      return Value::integer(int64_t(v.as_list().items.size()));
    case Value::Kind::dict:
      return Value::integer(int64_t(v.as_dict().items.size()));
    default:
      return type_error("object of type '" + std::string(type_name(v)) + "' has no len()");
  }
}

Expected<Value> filter_default(const Value& v, const CallArgs& args, Budget&) {
  SM_ASSIGN(bound, bind_args("default", args, {"default_value", "boolean"}));
  const bool boolean = bound[1] && truthy(*bound[1]);
  if (v.is_undefined() || (boolean && !truthy(v))) return bound[0].value_or(Value::string(""));
  return v;
}

Expected<Value> filter_first(const Value& v, const CallArgs&, Budget& budget) {
  SM_ASSIGN(items, iterate(v, budget));
  return items.empty() ? Value::undefined("first") : items.front();
}

Expected<Value> filter_last(const Value& v, const CallArgs&, Budget& budget) {
  SM_ASSIGN(items, iterate(v, budget));
  return items.empty() ? Value::undefined("last") : items.back();
}

Expected<Value> filter_float(const Value& v, const CallArgs& args, Budget&) {
  SM_ASSIGN(bound, bind_args("float", args, {"default"}));
  const Value fallback = bound[0].value_or(Value::floating(0.0));
  if (v.is_undefined()) return undefined_error(v);  // float(Undefined) raises, not a default
  if (v.is_number()) return Value::floating(v.as_float());
  if (v.is_string()) {
    if (auto d = parse_py_float(v.as_string())) return Value::floating(*d);
  }
  return fallback;
}

Expected<Value> filter_int(const Value& v, const CallArgs& args, Budget&) {
  SM_ASSIGN(bound, bind_args("int", args, {"default", "base"}));
  const Value fallback = bound[0].value_or(Value::integer(0));
  const int base = bound[1] && bound[1]->is(Value::Kind::integer) ? int(bound[1]->as_int()) : 10;
  if (base != 2 && base != 8 && base != 10 && base != 16) return type_error("int: base must be 2, 8, 10 or 16");
  std::optional<double> as_float;
  if (v.is_undefined()) return undefined_error(v);
  if (v.is(Value::Kind::integer) || v.is(Value::Kind::boolean)) return Value::integer(v.as_int());
  if (v.is(Value::Kind::floating)) as_float = v.as_float();
  if (v.is_string()) {
    if (auto i = parse_py_int(v.as_string(), base)) return Value::integer(*i);
    as_float = parse_py_float(v.as_string());  // "42.23" | int is 42
  }
  if (!as_float || std::isnan(*as_float)) return fallback;
  if (std::isinf(*as_float) || std::fabs(*as_float) >= 9.2e18)
    return type_error("int: the value does not fit in 64 bits");
  return Value::integer(int64_t(std::trunc(*as_float)));
}

Expected<Value> filter_items(const Value& v, const CallArgs&, Budget& budget) {
  if (v.is_undefined()) return Value::list({});
  if (!v.is_dict()) return type_error("items: can only get item pairs from a mapping");
  SM_TRY(budget.charge(v.as_dict().items.size()));
  std::vector<Value> out;
  for (const auto& [k, item] : v.as_dict().items) out.push_back(Value::list({Value::string(k), item}, true));
  return Value::list(std::move(out));
}

Expected<Value> filter_join(const Value& v, const CallArgs& args, Budget& budget) {
  SM_ASSIGN(bound, bind_args("join", args, {"d", "attribute"}));
  std::string separator;
  if (bound[0]) {
    SM_ASSIGN(sep, text_of(*bound[0], budget));
    separator = std::move(sep);
  }
  SM_ASSIGN(items, iterate(v, budget));
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    Value item = items[i];
    if (bound[1] && !bound[1]->is_none()) {
      SM_ASSIGN(text, text_of(*bound[1], budget));
      SM_ASSIGN(attr, lookup_path(item, text));
      item = std::move(attr);
    }
    SM_ASSIGN(text, text_of(item, budget));
    if (i) out += separator;
    out += text;
    SM_TRY(check_string_size(out.size(), budget.limits()));
  }
  return Value::string(std::move(out));
}

Expected<Value> filter_list(const Value& v, const CallArgs&, Budget& budget) {
  SM_ASSIGN(items, iterate(v, budget));
  return Value::list(std::move(items));
}

Expected<Value> filter_lower(const Value& v, const CallArgs&, Budget& budget) {
  SM_ASSIGN(text, text_of(v, budget));
  return Value::string(ascii_lower(text));
}

Expected<Value> filter_upper(const Value& v, const CallArgs&, Budget& budget) {
  SM_ASSIGN(text, text_of(v, budget));
  return Value::string(ascii_upper(text));
}

// Arguments after the first `skip` positionals, for the filter or test named by one of them.
CallArgs rest_of(const CallArgs& args, size_t skip) {
  CallArgs rest;
  rest.positional.assign(args.positional.begin() + std::min(skip, args.positional.size()), args.positional.end());
  rest.keywords = args.keywords;
  return rest;
}

// jinja2's map / select family first asks `if value:`; a false value (0, none, '') maps to nothing.
Expected<std::vector<Value>> iterate_if_true(const Value& v, Budget& budget) {
  if (!truthy(v)) return std::vector<Value>();
  return iterate(v, budget);
}

Expected<Value> filter_map(const Value& v, const CallArgs& args, Budget& budget) {
  SM_ASSIGN(items, iterate_if_true(v, budget));
  std::vector<Value> out;
  if (args.positional.empty()) {  // map(attribute="x", default=...)
    SM_ASSIGN(bound, bind_args("map", args, {"attribute", "default"}));
    if (!bound[0] || !bound[0]->is_string()) return type_error("map needs a filter name or attribute=");
    for (const Value& item : items) {
      SM_ASSIGN(attr, lookup_path(item, bound[0]->as_string()));
      out.push_back(attr.is_undefined() && bound[1] ? *bound[1] : attr);
    }
  } else {
    if (!args.positional[0].is_string()) return type_error("map's filter name must be a string");
    const std::string& name = args.positional[0].as_string();
    if (!has_filter(name)) return type_error("no filter named '" + name + "'");
    const CallArgs rest = rest_of(args, 1);
    for (const Value& item : items) {
      SM_ASSIGN(mapped, apply_filter(name, item, rest, budget));
      out.push_back(std::move(mapped));
    }
  }
  return Value::list(std::move(out));
}

// select / reject / selectattr / rejectattr: keep the items whose (attribute's) test is `keep`.
Expected<Value> select_items(const Value& v, const CallArgs& args, Budget& budget, bool keep, bool by_attribute) {
  SM_ASSIGN(items, iterate_if_true(v, budget));
  size_t next_arg = 0;
  std::string attribute;
  if (by_attribute) {
    if (args.positional.empty() || !args.positional[0].is_string())
      return type_error("selectattr/rejectattr need an attribute name");
    attribute = args.positional[next_arg++].as_string();
  }
  std::string test;
  if (next_arg < args.positional.size()) {
    if (!args.positional[next_arg].is_string()) return type_error("select/reject's test name must be a string");
    test = args.positional[next_arg++].as_string();
    if (!has_test(test)) return type_error("no test named '" + test + "'");
  }
  const CallArgs rest = rest_of(args, next_arg);
  std::vector<Value> out;
  for (const Value& item : items) {
    Value subject = item;
    if (by_attribute) {
      SM_ASSIGN(attr, lookup_path(item, attribute));
      subject = std::move(attr);
    }
    bool passed = false;
    if (test.empty()) {
      passed = truthy(subject);
    } else {
      SM_ASSIGN(result, apply_test(test, subject, rest, budget));
      passed = result;
    }
    if (passed == keep) out.push_back(item);
  }
  return Value::list(std::move(out));
}

Expected<Value> filter_select(const Value& v, const CallArgs& a, Budget& b) {
  return select_items(v, a, b, true, false);
}
Expected<Value> filter_reject(const Value& v, const CallArgs& a, Budget& b) {
  return select_items(v, a, b, false, false);
}
Expected<Value> filter_selectattr(const Value& v, const CallArgs& a, Budget& b) {
  return select_items(v, a, b, true, true);
}
Expected<Value> filter_rejectattr(const Value& v, const CallArgs& a, Budget& b) {
  return select_items(v, a, b, false, true);
}

Expected<Value> filter_replace(const Value& v, const CallArgs& args, Budget& budget) {
  SM_ASSIGN(text, text_of(v, budget));
  SM_ASSIGN(method, get_attribute(Value::string(std::move(text)), "replace"));
  return method.as_function().call(args, budget);
}

Expected<Value> filter_safe(const Value& v, const CallArgs&, Budget&) { return v; }

Expected<Value> filter_string(const Value& v, const CallArgs&, Budget& budget) {
  SM_ASSIGN(text, text_of(v, budget));
  return Value::string(std::move(text));
}

Expected<Value> filter_tojson(const Value& v, const CallArgs& args, Budget& budget) {
  SM_ASSIGN(bound, bind_args("tojson", args, {"ensure_ascii", "indent", "separators", "sort_keys"}));
  JsonOptions options;
  options.ensure_ascii = bound[0] && truthy(*bound[0]);
  if (bound[1] && !bound[1]->is_none()) {
    if (bound[1]->is_string())
      options.indent = bound[1]->as_string();
    else if (bound[1]->is(Value::Kind::integer) || bound[1]->is(Value::Kind::boolean))
      options.indent = std::string(size_t(std::clamp<int64_t>(bound[1]->as_int(), 0, 64)), ' ');
    else
      return type_error("tojson: indent must be an integer or a string");
  }
  if (bound[2] && !bound[2]->is_none()) {
    const Value& seps = *bound[2];
    if (!seps.is_list() || seps.as_list().items.size() != 2 || !seps.as_list().items[0].is_string() ||
        !seps.as_list().items[1].is_string())
      return type_error("tojson: separators must be two strings");
    options.item_separator = seps.as_list().items[0].as_string();
    options.key_separator = seps.as_list().items[1].as_string();
  }
  options.sort_keys = bound[3] && truthy(*bound[3]);
  SM_TRY(budget.charge(1));
  SM_ASSIGN(json, to_json(v, options, budget.limits().max_output_bytes));
  return Value::string(std::move(json));
}

Expected<Value> filter_trim(const Value& v, const CallArgs& args, Budget& budget) {
  SM_ASSIGN(bound, bind_args("trim", args, {"chars"}));
  SM_ASSIGN(text, text_of(v, budget));
  std::optional<std::string> chars;
  if (bound[0] && !bound[0]->is_none()) {
    if (!bound[0]->is_string()) return type_error("trim: chars must be a string");
    chars = bound[0]->as_string();
  }
  return Value::string(std::string(py_strip(text, true, true, chars ? &*chars : nullptr)));
}

constexpr std::pair<std::string_view, FilterFn> kFilters[] = {
    {"abs", filter_abs},         {"count", filter_length},
    {"d", filter_default},       {"default", filter_default},
    {"first", filter_first},     {"float", filter_float},
    {"int", filter_int},         {"items", filter_items},
    {"join", filter_join},       {"last", filter_last},
    {"length", filter_length},   {"list", filter_list},
    {"lower", filter_lower},     {"map", filter_map},
    {"reject", filter_reject},   {"rejectattr", filter_rejectattr},
    {"replace", filter_replace}, {"safe", filter_safe},
    {"select", filter_select},   {"selectattr", filter_selectattr},
    {"string", filter_string},   {"tojson", filter_tojson},
    {"trim", filter_trim},       {"upper", filter_upper},
};

// ---- tests ----

Expected<Value> one_arg(std::string_view test, const CallArgs& args) {
  if (args.positional.size() != 1 || !args.keywords.empty())
    return type_error("the '" + std::string(test) + "' test takes one argument");
  return args.positional[0];
}

// value % divisor == want, with Python's % (floats too; strings are a TypeError there as here).
Expected<bool> remainder_is(const Value& v, const Value& divisor, int64_t want, Budget& budget) {
  SM_ASSIGN(rem, binary_op(BinaryOp::mod, v, divisor, budget));
  return equals(rem, Value::integer(want));
}

Expected<bool> test_defined(const Value& v, const CallArgs&, Budget&) { return !v.is_undefined(); }
Expected<bool> test_undefined(const Value& v, const CallArgs&, Budget&) { return v.is_undefined(); }
Expected<bool> test_none(const Value& v, const CallArgs&, Budget&) { return v.is_none(); }
Expected<bool> test_boolean(const Value& v, const CallArgs&, Budget&) { return v.is(Value::Kind::boolean); }
Expected<bool> test_true(const Value& v, const CallArgs&, Budget&) { return v.is(Value::Kind::boolean) && v.as_bool(); }
Expected<bool> test_false(const Value& v, const CallArgs&, Budget&) {
  return v.is(Value::Kind::boolean) && !v.as_bool();
}
Expected<bool> test_integer(const Value& v, const CallArgs&, Budget&) { return v.is(Value::Kind::integer); }
Expected<bool> test_float(const Value& v, const CallArgs&, Budget&) { return v.is(Value::Kind::floating); }
Expected<bool> test_number(const Value& v, const CallArgs&, Budget&) { return v.is_number(); }
Expected<bool> test_string(const Value& v, const CallArgs&, Budget&) { return v.is_string(); }
Expected<bool> test_mapping(const Value& v, const CallArgs&, Budget&) { return v.is_dict(); }
// jinja2's Undefined iterates (as empty), has a length and is callable (it raises when called).
Expected<bool> test_iterable(const Value& v, const CallArgs&, Budget&) {
  return v.is_undefined() || v.is_string() || v.is_list() || v.is_dict();
}
Expected<bool> test_callable(const Value& v, const CallArgs&, Budget&) {
  return v.is_undefined() || v.is(Value::Kind::function);
}
Expected<bool> test_odd(const Value& v, const CallArgs&, Budget& budget) {
  return remainder_is(v, Value::integer(2), 1, budget);
}
Expected<bool> test_even(const Value& v, const CallArgs&, Budget& budget) {
  return remainder_is(v, Value::integer(2), 0, budget);
}
Expected<bool> test_divisibleby(const Value& v, const CallArgs& args, Budget& budget) {
  SM_ASSIGN(arg, one_arg("divisibleby", args));
  return remainder_is(v, arg, 0, budget);
}
Expected<bool> test_eq(const Value& v, const CallArgs& args, Budget&) {
  SM_ASSIGN(arg, one_arg("eq", args));
  return equals(v, arg);
}
Expected<bool> test_ne(const Value& v, const CallArgs& args, Budget&) {
  SM_ASSIGN(arg, one_arg("ne", args));
  return !equals(v, arg);
}
template <int Sign, bool OrEqual>
Expected<bool> test_order(const Value& v, const CallArgs& args, Budget&) {
  SM_ASSIGN(arg, one_arg("comparison", args));
  if (v.is_undefined()) return undefined_error(v);
  if (arg.is_undefined()) return undefined_error(arg);
  SM_ASSIGN(c, compare(v, arg));
  return c == Sign || (OrEqual && c == 0);
}
Expected<bool> test_in(const Value& v, const CallArgs& args, Budget& budget) {
  SM_ASSIGN(arg, one_arg("in", args));
  if (arg.is_string()) SM_TRY(budget.charge(arg.as_string().size() / 256));
  return contains(arg, v);
}
Expected<bool> test_sequence(const Value& v, const CallArgs&, Budget&) {
  return v.is_undefined() || v.is_string() || v.is_list() || v.is_dict();
}

constexpr std::pair<std::string_view, TestFn> kTests[] = {
    {"boolean", test_boolean},
    {"callable", test_callable},
    {"defined", test_defined},
    {"divisibleby", test_divisibleby},
    {"eq", test_eq},
    {"equalto", test_eq},
    {"==", test_eq},
    {"even", test_even},
    {"false", test_false},
    {"float", test_float},
    {"ge", test_order<1, true>},
    {">=", test_order<1, true>},
    {"greaterthan", test_order<1, false>},
    {"gt", test_order<1, false>},
    {">", test_order<1, false>},
    {"in", test_in},
    {"integer", test_integer},
    {"iterable", test_iterable},
    {"le", test_order<-1, true>},
    {"<=", test_order<-1, true>},
    {"lessthan", test_order<-1, false>},
    {"lt", test_order<-1, false>},
    {"<", test_order<-1, false>},
    {"mapping", test_mapping},
    {"ne", test_ne},
    {"!=", test_ne},
    {"none", test_none},
    {"number", test_number},
    {"odd", test_odd},
    {"sequence", test_sequence},
    {"string", test_string},
    {"true", test_true},
    {"undefined", test_undefined},
};

bool takes_argument(std::string_view test) {
  static constexpr std::string_view kWithArgument[] = {
      "divisibleby", "eq", "equalto", "==", "ne", "!=",       "ge", ">=", "greaterthan",
      "gt",          ">",  "in",      "le", "<=", "lessthan", "lt", "<"};
  return std::find(std::begin(kWithArgument), std::end(kWithArgument), test) != std::end(kWithArgument);
}

template <class Table>
auto find_in(const Table& table, std::string_view name) -> decltype(&table[0].second) {
  for (const auto& entry : table)
    if (entry.first == name) return &entry.second;
  return nullptr;
}

}  // namespace

bool has_filter(std::string_view name) { return find_in(kFilters, name) != nullptr; }
bool has_test(std::string_view name) { return find_in(kTests, name) != nullptr; }

Expected<Value> apply_filter(std::string_view name, const Value& input, const CallArgs& args, Budget& budget) {
  const auto* fn = find_in(kFilters, name);
  if (!fn) return type_error("no filter named '" + std::string(name) + "'");
  SM_TRY(budget.charge(1));
  return (*fn)(input, args, budget);
}

Expected<bool> apply_test(std::string_view name, const Value& input, const CallArgs& args, Budget& budget) {
  const auto* fn = find_in(kTests, name);
  if (!fn) return type_error("no test named '" + std::string(name) + "'");
  // Python checks arity: `x is boolean y` passes y and fails, whatever the test would say.
  const size_t given = args.positional.size() + args.keywords.size();
  if (given != (takes_argument(name) ? 1 : 0))
    return type_error("the '" + std::string(name) + "' test takes " +
                      (takes_argument(name) ? "one argument" : "no arguments"));
  SM_TRY(budget.charge(1));
  return (*fn)(input, args, budget);
}

}  // namespace starmesh::jinja
