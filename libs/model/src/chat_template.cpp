#include "starmesh/model/chat_template.hpp"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "starmesh/model/jinja_text.hpp"

namespace starmesh {
namespace {

using json = nlohmann::json;
using jinja::Value;

// tokenizer_config.json files are tens of kB (some a few MB of added tokens); JSON nesting past
// this is not a tokenizer config (and would recurse deep in the parser).
constexpr size_t kMaxConfigBytes = size_t(64) << 20;
constexpr int kMaxConfigNesting = 64;
constexpr size_t kMaxStrftimeFormat = 256;

Error invalid(const std::string& what) { return make_error(ErrorCode::invalid_argument, what); }

// The deepest [ / { nesting of JSON text, strings skipped.
int json_nesting(std::string_view text) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

Expected<std::string> read_bounded(const std::filesystem::path& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return make_error(ErrorCode::not_found, "cannot read '", path.string(), "': ", ec.message());
  if (size > kMaxConfigBytes)
    return invalid("'" + path.string() + "' has " + std::to_string(size) +
                   " bytes, more than a tokenizer config may (" + std::to_string(kMaxConfigBytes) + ")");
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorCode::not_found, "cannot open '", path.string(), "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A special token as tokenizer_config.json writes it: a string, {"content": "..."}, or null.
Expected<std::string> special_token(const json& config, const char* key, const std::string& where) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::string();
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  return invalid(where + ": " + key + " must be a string or {\"content\": ...}");
}

// strftime for the conversions dates need, in the C locale, independent of the process locale.
Expected<std::string> format_time(const std::string& format, std::chrono::sys_seconds when) {
  if (format.size() > kMaxStrftimeFormat)
    return invalid("chat template: strftime_now's format is longer than " + std::to_string(kMaxStrftimeFormat));
  static constexpr const char* kDays[] = {"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"};
  static constexpr const char* kMonths[] = {"January", "February", "March",     "April",   "May",      "June",
                                            "July",    "August",   "September", "October", "November", "December"};
  const std::time_t t = std::chrono::system_clock::to_time_t(when);
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::string out;
  char buf[32];
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%' || i + 1 == format.size()) {
      out += format[i];
      continue;
    }
    const char c = format[++i];
    switch (c) {
      case 'a':
        out += std::string(kDays[tm.tm_wday]).substr(0, 3);
        break;
      case 'A':
        out += kDays[tm.tm_wday];
        break;
      case 'b':
      case 'h':
        out += std::string(kMonths[tm.tm_mon]).substr(0, 3);
        break;
      case 'B':
        out += kMonths[tm.tm_mon];
        break;
      case 'd':
      case 'e':
      case 'H':
      case 'I':
      case 'm':
      case 'M':
      case 'S':
      case 'y': {
        const int v = c == 'd' || c == 'e' ? tm.tm_mday
                      : c == 'H'           ? tm.tm_hour
                      : c == 'I'           ? (tm.tm_hour % 12 == 0 ? 12 : tm.tm_hour % 12)
                      : c == 'm'           ? tm.tm_mon + 1
                      : c == 'M'           ? tm.tm_min
                      : c == 'S'           ? tm.tm_sec
                                           : tm.tm_year % 100;
        std::snprintf(buf, sizeof buf, c == 'e' ? "%2d" : "%02d", v);
        out += buf;
        break;
      }
      case 'j':
        std::snprintf(buf, sizeof buf, "%03d", tm.tm_yday + 1);
        out += buf;
        break;
      case 'Y':
        out += std::to_string(tm.tm_year + 1900);
        break;
      case 'p':
        out += tm.tm_hour < 12 ? "AM" : "PM";
        break;
      case '%':
        out += '%';
        break;
      default:
        return invalid(std::string("chat template: strftime_now does not support %") + c);
    }
  }
  return out;
}

Value message_list(const std::vector<ChatMessage>& messages) {
  std::vector<Value> items;
  items.reserve(messages.size());
  for (const ChatMessage& m : messages)
    items.push_back(Value::dict({{"role", Value::string(m.role)}, {"content", Value::string(m.content)}}));
  return Value::list(std::move(items));
}

}  // namespace

Expected<ChatTemplate> ChatTemplate::parse(std::string source, std::string bos_token, std::string eos_token,
                                           const jinja::Limits& limits) {
  if (!jinja::is_valid_utf8(bos_token) || !jinja::is_valid_utf8(eos_token))
    return invalid("chat template: bos_token and eos_token must be UTF-8");
  SM_ASSIGN(compiled, jinja::Template::parse(source, limits));
  return ChatTemplate(std::move(compiled), std::move(source), std::move(bos_token), std::move(eos_token));
}

Expected<ChatTemplate> ChatTemplate::from_tokenizer_config(const std::filesystem::path& path,
                                                           const jinja::Limits& limits) {
  SM_ASSIGN(text, read_bounded(path));
  const std::string where = path.string();
  if (json_nesting(text) > kMaxConfigNesting)
    return invalid(where + ": JSON nests deeper than " + std::to_string(kMaxConfigNesting));
  json config;
  try {
    config = json::parse(text);
  } catch (const json::exception& e) {
    return invalid(where + " is not valid JSON: " + e.what());
  }
  if (!config.is_object()) return invalid(where + ": expected a JSON object");
  SM_ASSIGN(bos, special_token(config, "bos_token", where));
  SM_ASSIGN(eos, special_token(config, "eos_token", where));

  std::string source;
  const auto it = config.find("chat_template");
  if (it != config.end() && it->is_string()) {
    source = it->get<std::string>();
  } else if (it != config.end() && it->is_array()) {  // [{"name": ..., "template": ...}]: transformers takes "default"
    for (const json& entry : *it)
      if (entry.is_object() && entry.value("name", json()) == "default" && entry.contains("template") &&
          entry["template"].is_string())
        source = entry["template"].get<std::string>();
    if (source.empty()) return make_error(ErrorCode::not_found, where, ": chat_template lists no \"default\" template");
  } else if (it != config.end() && !it->is_null()) {
    return invalid(where + ": chat_template must be a string or a list of named templates");
  } else {
    const auto beside = path.parent_path() / "chat_template.jinja";
    if (!std::filesystem::exists(beside))
      return make_error(ErrorCode::not_found, where, " has no chat_template (and no chat_template.jinja beside it)");
    SM_ASSIGN(file, read_bounded(beside));
    source = std::move(file);
  }
  auto parsed = parse(std::move(source), std::move(bos), std::move(eos), limits);
  if (!parsed) return with_prefix(where + ": ", parsed.error());
  return parsed;
}

Expected<std::string> ChatTemplate::render(const std::vector<ChatMessage>& messages,
                                           const ChatRenderOptions& opts) const {
  for (size_t i = 0; i < messages.size(); ++i)
    if (!jinja::is_valid_utf8(messages[i].role) || !jinja::is_valid_utf8(messages[i].content))
      return invalid("chat message " + std::to_string(i) + " is not UTF-8");
  if (!jinja::is_valid_utf8(opts.date_string)) return invalid("chat: date_string is not UTF-8");
  const std::chrono::sys_seconds now =
      opts.now.value_or(std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now()));
  std::vector<std::pair<std::string, Value>> vars = {
      {"messages", message_list(messages)},
      {"tools", Value::none()},
      {"documents", Value::none()},
      {"add_generation_prompt", Value::boolean(opts.add_generation_prompt)},
      {"bos_token", Value::string(bos_token_)},
      {"eos_token", Value::string(eos_token_)},
      {"strftime_now", Value::function("strftime_now",
                                       [now](const jinja::CallArgs& args, jinja::Budget&) -> Expected<Value> {
                                         if (args.positional.size() != 1 || !args.positional[0].is_string() ||
                                             !args.keywords.empty())
                                           return invalid("chat template: strftime_now takes one format string");
                                         SM_ASSIGN(text, format_time(args.positional[0].as_string(), now));
                                         return Value::string(std::move(text));
                                       })},
  };
  if (!opts.date_string.empty()) vars.emplace_back("date_string", Value::string(opts.date_string));
  return template_.render(std::move(vars));
}

Expected<ChatSplit> split_chat(const ChatTemplate& t, const std::vector<ChatMessage>& messages,
                               const ChatRenderOptions& opts) {
  ChatRenderOptions fixed = opts;  // both renderings see the same clock
  if (!fixed.now) fixed.now = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
  SM_ASSIGN(full, t.render(messages, fixed));
  size_t last_user = messages.size();
  for (size_t i = messages.size(); i-- > 0;)
    if (messages[i].role == "user") {
      last_user = i;
      break;
    }
  if (last_user == messages.size() || last_user == 0) return ChatSplit{"", std::move(full)};
  ChatRenderOptions prefix_opts = fixed;
  prefix_opts.add_generation_prompt = false;
  const std::vector<ChatMessage> before(messages.begin(), messages.begin() + std::ptrdiff_t(last_user));
  auto prefix = t.render(before, prefix_opts);
  // A template that cannot render the earlier turns alone, or renders them differently once the
  // rest follows, has no reusable context: everything is the query.
  if (!prefix || full.compare(0, prefix->size(), *prefix) != 0) return ChatSplit{"", std::move(full)};
  ChatSplit split;
  split.query = full.substr(prefix->size());
  split.context = std::move(*prefix);
  return split;
}

}  // namespace starmesh
