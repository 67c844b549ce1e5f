#include "starmesh/model/jinja_value.hpp"

#include <algorithm>

namespace starmesh::jinja {

Status Budget::charge(uint64_t steps) {
  used_ += steps;
  if (used_ > limits_.max_steps)
    return make_error(ErrorCode::invalid_argument, "chat template: rendering took more than ", limits_.max_steps,
                      " steps (the max_steps bound); the template loops too long for this conversation");
  return Status::ok();
}

const Value* DictData::find(std::string_view key) const {
  for (const auto& [k, v] : items)
    if (k == key) return &v;
  return nullptr;
}

Value* NamespaceData::find(std::string_view key) {
  for (auto& [k, v] : attrs)
    if (k == key) return &v;
  return nullptr;
}

Value Value::undefined(std::string name) {
  Value v;
  v.v_ = Undefined{std::move(name)};
  return v;
}
Value Value::none() {
  Value v;
  v.v_ = None{};
  return v;
}
Value Value::boolean(bool b) {
  Value v;
  v.v_ = b;
  return v;
}
Value Value::integer(int64_t i) {
  Value v;
  v.v_ = i;
  return v;
}
Value Value::floating(double d) {
  Value v;
  v.v_ = d;
  return v;
}
Value Value::string(std::string s) {
  Value v;
  v.v_ = std::move(s);
  return v;
}

Value Value::list(std::vector<Value> items, bool tuple) {
  auto data = std::make_shared<ListData>();
  for (const Value& item : items) data->depth = std::max(data->depth, item.depth() + 1);
  data->items = std::move(items);
  data->tuple = tuple;
  Value v;
  v.v_ = std::shared_ptr<const ListData>(std::move(data));
  return v;
}

Value Value::dict(std::vector<std::pair<std::string, Value>> items) {
  auto data = std::make_shared<DictData>();
  for (const auto& item : items) data->depth = std::max(data->depth, item.second.depth() + 1);
  data->items = std::move(items);
  Value v;
  v.v_ = std::shared_ptr<const DictData>(std::move(data));
  return v;
}

Value Value::ns(std::vector<std::pair<std::string, Value>> attrs) {
  Value v;
  v.v_ = std::make_shared<NamespaceData>(NamespaceData{std::move(attrs)});
  return v;
}

Value Value::function(std::string name, NativeFunction call) {
  Value v;
  v.v_ = std::make_shared<const FunctionData>(FunctionData{std::move(name), std::move(call)});
  return v;
}

int Value::depth() const {
  if (is_list()) return as_list().depth;
  if (is_dict()) return as_dict().depth;
  return 0;
}

bool truthy(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::undefined:
    case Value::Kind::none:
      return false;
    case Value::Kind::boolean:
      return v.as_bool();
    case Value::Kind::integer:
      return v.as_int() != 0;
    case Value::Kind::floating:
      return v.as_float() != 0.0;
    case Value::Kind::string:
      return !v.as_string().empty();
    case Value::Kind::list:
      return !v.as_list().items.empty();
    case Value::Kind::dict:
      return !v.as_dict().items.empty();
    case Value::Kind::ns:
    case Value::Kind::function:
      return true;
  }
  return false;
}

bool equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is(Value::Kind::floating) || b.is(Value::Kind::floating)) return a.as_float() == b.as_float();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::undefined:
    case Value::Kind::none:
      return true;
    case Value::Kind::string:
      return a.as_string() == b.as_string();
    case Value::Kind::list: {
      const auto& x = a.as_list().items;
      const auto& y = b.as_list().items;
      if (x.size() != y.size() || a.as_list().tuple != b.as_list().tuple) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (!equals(x[i], y[i])) return false;
      return true;
    }
    case Value::Kind::dict: {
      const auto& x = a.as_dict();
      const auto& y = b.as_dict();
      if (x.items.size() != y.items.size()) return false;
      for (const auto& [key, value] : x.items) {
        const Value* other = y.find(key);
        if (!other || !equals(value, *other)) return false;
      }
      return true;
    }
    case Value::Kind::ns:
      return a.ns_identity() == b.ns_identity();
    case Value::Kind::function:
      return &a.as_function() == &b.as_function();
    default:
      return false;
  }
}

Expected<int> compare(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is(Value::Kind::floating) || b.is(Value::Kind::floating)) {
      const double x = a.as_float(), y = b.as_float();
      return x < y ? -1 : (y < x ? 1 : 0);
    }
    const int64_t x = a.as_int(), y = b.as_int();
    return x < y ? -1 : (y < x ? 1 : 0);
  }
  if (a.is_string() && b.is_string()) {
    const int c = a.as_string().compare(b.as_string());  // UTF-8 byte order is code point order
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (a.is_list() && b.is_list() && a.as_list().tuple == b.as_list().tuple) {
    const auto& x = a.as_list().items;
    const auto& y = b.as_list().items;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (equals(x[i], y[i])) continue;
      return compare(x[i], y[i]);
    }
    return x.size() < y.size() ? -1 : (x.size() > y.size() ? 1 : 0);
  }
  return make_error(ErrorCode::invalid_argument, "chat template: cannot order ", type_name(a), " and ", type_name(b));
}

std::string_view type_name(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::undefined:
      return "Undefined";
    case Value::Kind::none:
      return "NoneType";
    case Value::Kind::boolean:
      return "bool";
    case Value::Kind::integer:
      return "int";
    case Value::Kind::floating:
      return "float";
    case Value::Kind::string:
      return "str";
    case Value::Kind::list:
      return v.as_list().tuple ? "tuple" : "list";
    case Value::Kind::dict:
      return "dict";
    case Value::Kind::ns:
      return "Namespace";
    case Value::Kind::function:
      return "function";
  }
  return "object";
}

}  // namespace starmesh::jinja
