#include "starmesh/model/jinja_format.hpp"

#include <algorithm>
#include <cmath>

#include "starmesh/model/jinja_text.hpp"

namespace starmesh::jinja {
namespace {

Error too_long(size_t max_bytes) {
  return make_error(ErrorCode::invalid_argument, "chat template: a value's text passes ", max_bytes,
                    " bytes (the max_output_bytes bound)");
}

// Appends Python's str() (quote = false) or repr() (quote = true) of v to out.
Status append_python(std::string& out, const Value& v, bool quote, size_t max_bytes) {
  switch (v.kind()) {
    case Value::Kind::undefined:
      if (quote) out += "Undefined";  // str() of jinja2's Undefined is "", its repr "Undefined"
      break;
    case Value::Kind::none:
      out += "None";
      break;
    case Value::Kind::boolean:
      out += v.as_bool() ? "True" : "False";
      break;
    case Value::Kind::integer:
      out += std::to_string(v.as_int());
      break;
    case Value::Kind::floating:
      out += py_float_repr(v.as_float());
      break;
    case Value::Kind::string:
      if (quote)
        out += py_string_repr(v.as_string());
      else
        out += v.as_string();
      break;
    case Value::Kind::list: {
      const ListData& list = v.as_list();
      out += list.tuple ? '(' : '[';
      for (size_t i = 0; i < list.items.size(); ++i) {
        if (i) out += ", ";
        SM_TRY(append_python(out, list.items[i], true, max_bytes));
        if (out.size() > max_bytes) return too_long(max_bytes);
      }
      if (list.tuple && list.items.size() == 1) out += ',';
      out += list.tuple ? ')' : ']';
      break;
    }
    case Value::Kind::dict: {
      out += '{';
      bool first = true;
      for (const auto& [key, value] : v.as_dict().items) {
        if (!first) out += ", ";
        first = false;
        out += py_string_repr(key) + ": ";
        SM_TRY(append_python(out, value, true, max_bytes));
        if (out.size() > max_bytes) return too_long(max_bytes);
      }
      out += '}';
      break;
    }
    case Value::Kind::ns:
      out += "<Namespace>";  // jinja2 lists the attributes too; no template we serve prints one
      break;
    case Value::Kind::function:
      out += "<function " + v.as_function().name + ">";
      break;
  }
  if (out.size() > max_bytes) return too_long(max_bytes);
  return Status::ok();
}

struct JsonWriter {
  const JsonOptions& options;
  size_t max_bytes;
  std::string out;

  void newline(int level) {
    out += '\n';
    for (int i = 0; i < level; ++i) out += *options.indent;
  }

  Status write(const Value& v, int level) {
    const std::string item_sep = options.item_separator.value_or(options.indent ? "," : ", ");
    const std::string key_sep = options.key_separator.value_or(": ");
    switch (v.kind()) {
      case Value::Kind::none:
        out += "null";
        break;
      case Value::Kind::boolean:
        out += v.as_bool() ? "true" : "false";
        break;
      case Value::Kind::integer:
        out += std::to_string(v.as_int());
        break;
      case Value::Kind::floating: {
        const double d = v.as_float();
        if (std::isnan(d))
          out += "NaN";
        else if (std::isinf(d))
          out += d > 0 ? "Infinity" : "-Infinity";
        else
          out += py_float_repr(d);
        break;
      }
      case Value::Kind::string:
        out += '"';
        append_json_string(out, v.as_string(), options.ensure_ascii);
        out += '"';
        break;
      case Value::Kind::list: {
        const auto& items = v.as_list().items;
        if (items.empty()) {
          out += "[]";
          break;
        }
        out += '[';
        for (size_t i = 0; i < items.size(); ++i) {
          if (i) out += item_sep;
          if (options.indent) newline(level + 1);
          SM_TRY(write(items[i], level + 1));
        }
        if (options.indent) newline(level);
        out += ']';
        break;
      }
      case Value::Kind::dict: {
        std::vector<const std::pair<std::string, Value>*> items;
        for (const auto& item : v.as_dict().items) items.push_back(&item);
        if (items.empty()) {
          out += "{}";
          break;
        }
        if (options.sort_keys)
          std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return a->first < b->first; });
        out += '{';
        for (size_t i = 0; i < items.size(); ++i) {
          if (i) out += item_sep;
          if (options.indent) newline(level + 1);
          out += '"';
          append_json_string(out, items[i]->first, options.ensure_ascii);
          out += '"' + key_sep;
          SM_TRY(write(items[i]->second, level + 1));
        }
        if (options.indent) newline(level);
        out += '}';
        break;
      }
      default:
        return make_error(ErrorCode::invalid_argument, "chat template: tojson: object of type ", type_name(v),
                          " is not JSON serializable");
    }
    if (out.size() > max_bytes) return too_long(max_bytes);
    return Status::ok();
  }
};

}  // namespace

Expected<std::string> to_str(const Value& v, size_t max_bytes) {
  if (v.is_string()) {
    if (v.as_string().size() > max_bytes) return too_long(max_bytes);
    return v.as_string();
  }
  std::string out;
  SM_TRY(append_python(out, v, false, max_bytes));
  return out;
}

Expected<std::string> to_repr(const Value& v, size_t max_bytes) {
  std::string out;
  SM_TRY(append_python(out, v, true, max_bytes));
  return out;
}

Expected<std::string> to_json(const Value& v, const JsonOptions& options, size_t max_bytes) {
  JsonWriter writer{options, max_bytes, {}};
  SM_TRY(writer.write(v, 0));
  return std::move(writer.out);
}

}  // namespace starmesh::jinja
