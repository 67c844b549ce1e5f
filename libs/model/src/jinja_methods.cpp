// Attributes, subscripts, iteration, methods and the global functions (jinja_builtins.hpp).
#include <algorithm>

#include "starmesh/model/jinja_builtins.hpp"
#include "starmesh/model/jinja_text.hpp"

namespace starmesh::jinja {
namespace {

Error type_error(std::string_view what) { return make_error(ErrorCode::invalid_argument, "chat template: ", what); }

// An optional argument that must be a string (or none / absent).
Expected<std::optional<std::string>> optional_string(const std::optional<Value>& v, std::string_view what) {
  if (!v || v->is_none()) return std::optional<std::string>();
  if (!v->is_string()) return type_error(std::string(what) + " must be a string or none");
  return std::optional<std::string>(v->as_string());
}

Expected<Value> str_strip(const std::string& self, const CallArgs& args, bool left, bool right) {
  SM_ASSIGN(bound, bind_args("str.strip", args, {"chars"}));
  SM_ASSIGN(chars, optional_string(bound[0], "strip's chars"));
  return Value::string(std::string(py_strip(self, left, right, chars ? &*chars : nullptr)));
}

Expected<Value> str_affix(const std::string& self, const CallArgs& args, bool prefix) {
  SM_ASSIGN(bound, bind_args(prefix ? "str.startswith" : "str.endswith", args, {"affix"}));
  if (!bound[0]) return type_error("startswith/endswith take one argument");
  std::vector<Value> candidates;
  if (bound[0]->is_list() && bound[0]->as_list().tuple)
    candidates = bound[0]->as_list().items;
  else
    candidates.push_back(*bound[0]);
  for (const Value& c : candidates) {
    if (!c.is_string()) return type_error("startswith/endswith take a string or a tuple of strings");
    const std::string& a = c.as_string();
    if (a.size() <= self.size() &&
        (prefix ? self.compare(0, a.size(), a) == 0 : self.compare(self.size() - a.size(), a.size(), a) == 0))
      return Value::boolean(true);
  }
  return Value::boolean(false);
}

Expected<Value> str_split(const std::string& self, const CallArgs& args, Budget& budget) {
  SM_ASSIGN(bound, bind_args("str.split", args, {"sep", "maxsplit"}));
  SM_ASSIGN(sep, optional_string(bound[0], "split's sep"));
  int64_t maxsplit = -1;
  if (bound[1]) {
    if (!bound[1]->is(Value::Kind::integer)) return type_error("split's maxsplit must be an integer");
    maxsplit = bound[1]->as_int();
  }
  if (sep && sep->empty()) return type_error("split: empty separator");
  SM_TRY(budget.charge(self.size() / 64 + 1));
  std::vector<Value> parts;
  const std::string_view s(self);
  if (sep) {
    size_t start = 0;
    for (size_t hit; (maxsplit < 0 || int64_t(parts.size()) < maxsplit) && (hit = s.find(*sep, start)) != s.npos;) {
      parts.push_back(Value::string(std::string(s.substr(start, hit - start))));
      start = hit + sep->size();
    }
    parts.push_back(Value::string(std::string(s.substr(start))));
  } else {  // runs of whitespace, none at the ends
    size_t i = 0, len = 0;
    const auto skip_space = [&] {
      while (i < s.size() && is_py_space(decode_at(s, i, len))) i += len;
    };
    skip_space();
    while (i < s.size()) {
      if (maxsplit >= 0 && int64_t(parts.size()) == maxsplit) {
        parts.push_back(Value::string(std::string(s.substr(i))));  // the rest keeps its trailing space
        break;
      }
      const size_t start = i;
      while (i < s.size() && !is_py_space(decode_at(s, i, len))) i += len;
      parts.push_back(Value::string(std::string(s.substr(start, i - start))));
      skip_space();
    }
  }
  SM_TRY(check_items(parts.size(), budget.limits()));
  return Value::list(std::move(parts));
}

Expected<Value> str_replace(const std::string& self, const CallArgs& args, Budget& budget) {
  SM_ASSIGN(bound, bind_args("str.replace", args, {"old", "new", "count"}));
  if (!bound[0] || !bound[1] || !bound[0]->is_string() || !bound[1]->is_string())
    return type_error("replace takes two strings (and a count)");
  int64_t count = -1;
  if (bound[2] && !bound[2]->is_none()) {
    if (!bound[2]->is(Value::Kind::integer)) return type_error("replace's count must be an integer");
    count = bound[2]->as_int();
  }
  const std::string& from = bound[0]->as_string();
  const std::string& to = bound[1]->as_string();
  SM_TRY(budget.charge(self.size() / 64 + 1));
  std::string out;
  int64_t done = 0;
  const auto replaced = [&] { return count >= 0 && done >= count; };
  if (from.empty()) {  // Python inserts `to` before every character and at the end
    const std::vector<size_t> at = code_point_offsets(self);
    for (size_t k = 0; k + 1 < at.size(); ++k) {
      if (!replaced()) out += to, ++done;
      out.append(self, at[k], at[k + 1] - at[k]);
      SM_TRY(check_string_size(out.size(), budget.limits()));
    }
    if (!replaced()) out += to;
  } else {
    size_t start = 0;
    for (size_t hit; !replaced() && (hit = self.find(from, start)) != self.npos; ++done) {
      out.append(self, start, hit - start);
      out += to;
      start = hit + from.size();
      SM_TRY(check_string_size(out.size(), budget.limits()));
    }
    out.append(self, start);
  }
  SM_TRY(check_string_size(out.size(), budget.limits()));
  return Value::string(std::move(out));
}

Expected<Value> str_join(const std::string& self, const CallArgs& args, Budget& budget) {
  SM_ASSIGN(bound, bind_args("str.join", args, {"iterable"}));
  if (!bound[0]) return type_error("join takes one argument");
  SM_ASSIGN(items, iterate(*bound[0], budget));
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!items[i].is_string()) return type_error("str.join: sequence item is not a string");
    if (i) out += self;
    out += items[i].as_string();
    SM_TRY(check_string_size(out.size(), budget.limits()));
  }
  return Value::string(std::move(out));
}

Expected<Value> no_args(std::string_view name, const CallArgs& args, Value result) {
  if (!args.positional.empty() || !args.keywords.empty())
    return type_error(std::string(name) + "() takes no arguments");
  return result;
}

// A method of `self` (a string or dict), or nothing if it has none of that name.
std::optional<Value> method(const Value& self, const std::string& name) {
  if (self.is_string()) {
    static constexpr std::string_view kNames[] = {"strip", "lstrip",  "rstrip", "startswith", "endswith",
                                                  "split", "replace", "join",   "upper",      "lower"};
    if (std::find(std::begin(kNames), std::end(kNames), name) == std::end(kNames)) return std::nullopt;
    return Value::function("str." + name, [self, name](const CallArgs& args, Budget& budget) -> Expected<Value> {
      const std::string& s = self.as_string();
      if (name == "strip") return str_strip(s, args, true, true);
      if (name == "lstrip") return str_strip(s, args, true, false);
      if (name == "rstrip") return str_strip(s, args, false, true);
      if (name == "startswith") return str_affix(s, args, true);
      if (name == "endswith") return str_affix(s, args, false);
      if (name == "split") return str_split(s, args, budget);
      if (name == "replace") return str_replace(s, args, budget);
      if (name == "join") return str_join(s, args, budget);
      if (name == "upper") return no_args(name, args, Value::string(ascii_upper(s)));
      return no_args(name, args, Value::string(ascii_lower(s)));
    });
  }
  if (self.is_dict()) {
    if (name != "items" && name != "keys" && name != "values" && name != "get") return std::nullopt;
    return Value::function("dict." + name, [self, name](const CallArgs& args, Budget& budget) -> Expected<Value> {
      const DictData& d = self.as_dict();
      SM_TRY(budget.charge(d.items.size() + 1));
      if (name == "get") {
        SM_ASSIGN(bound, bind_args("dict.get", args, {"key", "default"}));
        if (!bound[0]) return type_error("get takes a key");
        const Value* found = bound[0]->is_string() ? d.find(bound[0]->as_string()) : nullptr;
        return found ? *found : bound[1].value_or(Value::none());
      }
      std::vector<Value> out;
      for (const auto& [k, v] : d.items) {
        if (name == "items")
          out.push_back(Value::list({Value::string(k), v}, true));
        else
          out.push_back(name == "keys" ? Value::string(k) : v);
      }
      return no_args(name, args, Value::list(std::move(out)));
    });
  }
  return std::nullopt;
}

Expected<Value> make_range(const CallArgs& args, Budget& budget) {
  if (!args.keywords.empty() || args.positional.empty() || args.positional.size() > 3)
    return type_error("range takes 1 to 3 integers");
  for (const Value& v : args.positional)
    if (!v.is(Value::Kind::integer) && !v.is(Value::Kind::boolean)) return type_error("range takes integers");
  int64_t start = 0, stop = 0, step = 1;
  if (args.positional.size() == 1) {
    stop = args.positional[0].as_int();
  } else {
    start = args.positional[0].as_int();
    stop = args.positional[1].as_int();
    if (args.positional.size() == 3) step = args.positional[2].as_int();
  }
  if (step == 0) return type_error("range step must not be zero");
  // Python's len(range(...)), in 128 bits so no difference overflows.
  const __int128 span = step > 0 ? __int128(stop) - start : __int128(start) - stop;
  const __int128 by = step > 0 ? __int128(step) : -__int128(step);
  const __int128 count = span > 0 ? (span - 1) / by + 1 : 0;
  // jinja2's sandbox refuses ranges over 100,000 items; ours also keeps to max_items.
  if (count > 100000) return type_error("range has more than 100000 items (jinja2's sandbox bound)");
  SM_TRY(check_items(size_t(count), budget.limits()));
  SM_TRY(budget.charge(uint64_t(count) + 1));
  std::vector<Value> out;
  for (int64_t i = 0; i < int64_t(count); ++i) out.push_back(Value::integer(start + i * step));
  return Value::list(std::move(out));
}

std::vector<std::pair<std::string, Value>> keyword_pairs(const CallArgs& args) { return args.keywords; }

}  // namespace

Status check_string_size(size_t bytes, const Limits& limits) {
  if (bytes > limits.max_output_bytes)
    return make_error(ErrorCode::invalid_argument, "chat template: a string passes ", limits.max_output_bytes,
                      " bytes (the max_output_bytes bound)");
  return Status::ok();
}

Status check_items(size_t items, const Limits& limits) {
  if (items > limits.max_items)
    return make_error(ErrorCode::invalid_argument, "chat template: a list passes ", limits.max_items,
                      " items (the max_items bound)");
  return Status::ok();
}

Error undefined_error(const Value& v) {
  const std::string& name = v.undefined_name();
  return make_error(ErrorCode::invalid_argument, "chat template: ", name.empty() ? "a value" : "'" + name + "'",
                    " is undefined");
}

Expected<std::vector<std::optional<Value>>> bind_args(std::string_view callee, const CallArgs& args,
                                                      std::initializer_list<std::string_view> params) {
  std::vector<std::optional<Value>> bound(params.size());
  if (args.positional.size() > params.size())
    return type_error(std::string(callee) + " takes at most " + std::to_string(params.size()) + " arguments");
  for (size_t i = 0; i < args.positional.size(); ++i) bound[i] = args.positional[i];
  for (const auto& [key, value] : args.keywords) {
    const auto it = std::find(params.begin(), params.end(), key);
    if (it == params.end()) return type_error(std::string(callee) + " has no argument named '" + key + "'");
    auto& slot = bound[size_t(it - params.begin())];
    if (slot) return type_error(std::string(callee) + " got '" + key + "' twice");
    slot = value;
  }
  return bound;
}

Expected<Value> get_attribute(const Value& obj, const std::string& name) {
  if (obj.is_undefined()) return undefined_error(obj);
  if (auto m = method(obj, name)) return *m;
  if (obj.is_dict()) {
    if (const Value* v = obj.as_dict().find(name)) return *v;
  } else if (obj.is(Value::Kind::ns)) {
    if (const Value* v = obj.as_ns().find(name)) return *v;
  }
  return Value::undefined(name);
}

Expected<Value> get_item(const Value& obj, const Value& key) {
  if (obj.is_undefined()) return undefined_error(obj);
  const bool int_key = key.is(Value::Kind::integer) || key.is(Value::Kind::boolean);
  if (obj.is_list() && int_key) {
    const auto& items = obj.as_list().items;
    int64_t i = key.as_int();
    if (i < 0) i += int64_t(items.size());
    if (i >= 0 && i < int64_t(items.size())) return items[size_t(i)];
  } else if (obj.is_string() && int_key) {
    const std::vector<size_t> at = code_point_offsets(obj.as_string());
    int64_t i = key.as_int();
    const int64_t n = int64_t(at.size()) - 1;
    if (i < 0) i += n;
    if (i >= 0 && i < n) return Value::string(obj.as_string().substr(at[size_t(i)], at[size_t(i) + 1] - at[size_t(i)]));
  } else if (obj.is_dict() && key.is_string()) {
    if (const Value* v = obj.as_dict().find(key.as_string())) return *v;
  }
  if (key.is_string()) return get_attribute(obj, key.as_string());  // jinja2 falls back to getattr
  return Value::undefined("");
}

Expected<Value> get_slice(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  if (obj.is_undefined()) return undefined_error(obj);
  for (const Value* b : {&start, &stop, &step})
    if (!b->is_none() && !b->is_undefined() && !b->is(Value::Kind::integer) && !b->is(Value::Kind::boolean))
      return Value::undefined("");
  if (!obj.is_list() && !obj.is_string()) return Value::undefined("");
  std::vector<size_t> at;
  int64_t len = 0;
  if (obj.is_list()) {
    len = int64_t(obj.as_list().items.size());
  } else {
    at = code_point_offsets(obj.as_string());
    len = int64_t(at.size()) - 1;
  }
  const int64_t by = step.is_none() || step.is_undefined() ? 1 : step.as_int();
  if (by == 0) return type_error("slice step cannot be zero");
  const auto clamp = [&](const Value& v, int64_t fallback) {
    if (v.is_none() || v.is_undefined()) return fallback;
    int64_t x = v.as_int();
    if (x < 0) {
      x += len;
      if (x < 0) x = by < 0 ? -1 : 0;
    } else if (x >= len) {
      x = by < 0 ? len - 1 : len;
    }
    return x;
  };
  const int64_t first = clamp(start, by < 0 ? len - 1 : 0);
  const int64_t last = clamp(stop, by < 0 ? -1 : len);
  if (obj.is_list()) {
    std::vector<Value> out;
    for (int64_t i = first; by > 0 ? i < last : i > last; i += by) out.push_back(obj.as_list().items[size_t(i)]);
    return Value::list(std::move(out), obj.as_list().tuple);
  }
  std::string out;
  const std::string& s = obj.as_string();
  for (int64_t i = first; by > 0 ? i < last : i > last; i += by)
    out.append(s, at[size_t(i)], at[size_t(i) + 1] - at[size_t(i)]);
  return Value::string(std::move(out));
}

Expected<bool> contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::undefined:
      return false;
    case Value::Kind::string:
      if (!item.is_string())
        return type_error("'in <string>' requires string as left operand, not " + std::string(type_name(item)));
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Value::Kind::list:
      for (const Value& v : container.as_list().items)
        if (equals(v, item)) return true;
      return false;
    case Value::Kind::dict:
      if ((item.is_list() && !item.as_list().tuple) || item.is_dict())
        return type_error("unhashable type: '" + std::string(type_name(item)) + "'");
      return item.is_string() && container.as_dict().find(item.as_string()) != nullptr;
    default:
      return type_error("argument of type '" + std::string(type_name(container)) + "' is not iterable");
  }
}

Expected<std::vector<Value>> iterate(const Value& v, Budget& budget) {
  switch (v.kind()) {
    case Value::Kind::undefined:
      return std::vector<Value>();
    case Value::Kind::list:
      SM_TRY(budget.charge(v.as_list().items.size()));
      return v.as_list().items;
    case Value::Kind::dict: {
      SM_TRY(budget.charge(v.as_dict().items.size()));
      std::vector<Value> keys;
      for (const auto& item : v.as_dict().items) keys.push_back(Value::string(item.first));
      return keys;
    }
    case Value::Kind::string: {
      const std::string& s = v.as_string();
      SM_TRY(budget.charge(s.size()));
      SM_TRY(check_items(s.size(), budget.limits()));
      std::vector<Value> chars;
      for (size_t i = 0, len = 0; i < s.size(); i += len) {
        decode_at(s, i, len);
        chars.push_back(Value::string(s.substr(i, len)));
      }
      return chars;
    }
    default:
      return type_error("'" + std::string(type_name(v)) + "' object is not iterable");
  }
}

std::vector<std::pair<std::string, Value>> default_globals() {
  std::vector<std::pair<std::string, Value>> globals;
  globals.emplace_back("range", Value::function("range", make_range));
  globals.emplace_back("namespace", Value::function("namespace", [](const CallArgs& args, Budget&) -> Expected<Value> {
                         std::vector<std::pair<std::string, Value>> attrs;
                         if (args.positional.size() > 1) return type_error("namespace takes at most one dict");
                         if (args.positional.size() == 1) {
                           if (!args.positional[0].is_dict()) return type_error("namespace's argument must be a dict");
                           attrs = args.positional[0].as_dict().items;
                         }
                         for (const auto& kw : args.keywords) attrs.push_back(kw);
                         return Value::ns(std::move(attrs));
                       }));
  globals.emplace_back("dict", Value::function("dict", [](const CallArgs& args, Budget&) -> Expected<Value> {
                         if (!args.positional.empty()) return type_error("dict() takes keyword arguments only");
                         return Value::dict(keyword_pairs(args));
                       }));
  globals.emplace_back("raise_exception",
                       Value::function("raise_exception", [](const CallArgs& args, Budget&) -> Expected<Value> {
                         std::string message;
                         if (!args.positional.empty() && args.positional[0].is_string())
                           message = args.positional[0].as_string();
                         return make_error(ErrorCode::invalid_argument, "chat template raised an error: ", message);
                       }));
  return globals;
}

}  // namespace starmesh::jinja
