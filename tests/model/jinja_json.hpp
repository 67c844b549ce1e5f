#pragma once
// Test helper: JSON (the fixtures' contexts) as Jinja values, the way Python's json.load would
// hand them to jinja2 (ordered_json: dicts keep their order, as Python's do).
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "starmesh/model/jinja_value.hpp"

namespace starmesh::test {

inline jinja::Value jinja_from_json(const nlohmann::ordered_json& j) {
  using jinja::Value;
  if (j.is_null()) return Value::none();
  if (j.is_boolean()) return Value::boolean(j.get<bool>());
  if (j.is_number_integer()) return Value::integer(j.get<int64_t>());
  if (j.is_number()) return Value::floating(j.get<double>());
  if (j.is_string()) return Value::string(j.get<std::string>());
  if (j.is_array()) {
    std::vector<Value> items;
    for (const auto& item : j) items.push_back(jinja_from_json(item));
    return Value::list(std::move(items));
  }
  std::vector<std::pair<std::string, Value>> items;
  for (const auto& [key, value] : j.items()) items.emplace_back(key, jinja_from_json(value));
  return Value::dict(std::move(items));
}

inline std::vector<std::pair<std::string, jinja::Value>> jinja_context(const nlohmann::ordered_json& object) {
  std::vector<std::pair<std::string, jinja::Value>> vars;
  for (const auto& [key, value] : object.items()) vars.emplace_back(key, jinja_from_json(value));
  return vars;
}

}  // namespace starmesh::test
