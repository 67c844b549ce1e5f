#pragma once
// A Jinja value: what a Python object is to jinja2, for the types chat templates use.
// Lists and dicts are immutable once built (transformers renders in jinja2's
// ImmutableSandboxedEnvironment, where templates cannot change them), so they are shared, not
// copied; a namespace() is the one mutable object (`{% set ns.x = ... %}`).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "starmesh/core/expected.hpp"

namespace starmesh::jinja {

// How far a template may go. Everything a template or a conversation can grow is bounded, and
// an error names the bound it ran into.
struct Limits {
  size_t max_source_bytes = size_t(1) << 20;    // the template text
  size_t max_output_bytes = size_t(256) << 20;  // the rendering, and any one string built on the way
                                                // (a request's context and query: 2 x 128 MiB)
  int max_depth = 64;                           // nesting: blocks, expressions, lists in lists
  uint64_t max_steps = 20'000'000;              // work: nodes evaluated, loop turns, items, 256 B of text
  size_t max_items = size_t(1) << 20;           // elements of one list or dict built by the template
};

// The work done so far against Limits::max_steps; builtins charge it for the items they visit.
class Budget {
 public:
  explicit Budget(const Limits& limits) : limits_(limits) {}
  Status charge(uint64_t steps);
  const Limits& limits() const { return limits_; }

 private:
  const Limits& limits_;
  uint64_t used_ = 0;
};

class Value;
struct ListData {
  std::vector<Value> items;
  bool tuple = false;  // prints as (a, b)
  int depth = 1;
};
struct DictData {
  std::vector<std::pair<std::string, Value>> items;  // insertion order, as Python's dict
  int depth = 1;
  const Value* find(std::string_view key) const;
};
struct NamespaceData {
  std::vector<std::pair<std::string, Value>> attrs;
  Value* find(std::string_view key);
};
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keywords;
};
using NativeFunction = std::function<Expected<Value>(const CallArgs&, Budget&)>;
struct FunctionData {
  std::string name;
  NativeFunction call;
};

class Value {
 public:
  enum class Kind : uint8_t { undefined, none, boolean, integer, floating, string, list, dict, ns, function };

  Value() = default;                         // undefined
  static Value undefined(std::string name);  // `name`: what was looked up, for messages
  static Value none();
  static Value boolean(bool b);
  static Value integer(int64_t i);
  static Value floating(double d);
  static Value string(std::string s);
  static Value list(std::vector<Value> items, bool tuple = false);
  static Value dict(std::vector<std::pair<std::string, Value>> items);
  static Value ns(std::vector<std::pair<std::string, Value>> attrs);
  static Value function(std::string name, NativeFunction call);

  Kind kind() const { return Kind(v_.index()); }
  bool is(Kind k) const { return kind() == k; }
  bool is_undefined() const { return is(Kind::undefined); }
  bool is_none() const { return is(Kind::none); }
  bool is_string() const { return is(Kind::string); }
  bool is_number() const { return is(Kind::integer) || is(Kind::floating) || is(Kind::boolean); }
  bool is_list() const { return is(Kind::list); }
  bool is_dict() const { return is(Kind::dict); }

  const std::string& undefined_name() const { return std::get<0>(v_).name; }
  bool as_bool() const { return std::get<2>(v_); }
  int64_t as_int() const { return is(Kind::boolean) ? int64_t(as_bool()) : std::get<3>(v_); }  // bool is an int
  double as_float() const { return is(Kind::floating) ? std::get<4>(v_) : double(as_int()); }
  const std::string& as_string() const { return std::get<5>(v_); }
  const ListData& as_list() const { return *std::get<6>(v_); }
  const DictData& as_dict() const { return *std::get<7>(v_); }
  NamespaceData& as_ns() const { return *std::get<8>(v_); }
  const FunctionData& as_function() const { return *std::get<9>(v_); }
  const NamespaceData* ns_identity() const { return std::get<8>(v_).get(); }

  // How deep lists and dicts nest in this value (0 for a scalar): bounded by Limits::max_depth
  // so printing, comparing and serialising it cannot recurse without end.
  int depth() const;

 private:
  struct Undefined {
    std::string name;
  };
  struct None {};
  std::variant<Undefined, None, bool, int64_t, double, std::string, std::shared_ptr<const ListData>,
               std::shared_ptr<const DictData>, std::shared_ptr<NamespaceData>, std::shared_ptr<const FunctionData>>
      v_;
};

// Python's truth: empty strings and containers, 0, None and undefined are false.
bool truthy(const Value& v);
// Python's ==: 1 == 1.0 == True, lists by element, dicts by key whatever the order; undefined
// equals only undefined (jinja2's Undefined.__eq__).
bool equals(const Value& a, const Value& b);
// Python's <: numbers with numbers, strings by code point, lists element by element; anything
// else is a TypeError (an error naming both types). Returns -1, 0 or 1.
Expected<int> compare(const Value& a, const Value& b);
// Python's type name: "int", "str", "list", "dict", "NoneType", "Undefined", ...
std::string_view type_name(const Value& v);

}  // namespace starmesh::jinja
