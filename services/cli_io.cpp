#include "cli_io.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/spdlog.h>

#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>

#include "starmesh/service/request.hpp"

namespace starmesh::cli {

Expected<std::string> read_text_input(const std::string& flag, const std::string& path) {
  std::ifstream file;
  std::istream* in = &std::cin;
  if (path != "-") {
    file.open(path, std::ios::binary);
    if (!file) return make_error(ErrorCode::invalid_argument, "cannot read ", flag, " '", path, "'");
    in = &file;
  }
  std::string text;
  char buffer[1 << 16];
  while (in->read(buffer, sizeof buffer) || in->gcount() > 0) {
    text.append(buffer, size_t(in->gcount()));
    if (text.size() > kMaxTextBytes)
      return make_error(ErrorCode::invalid_argument, flag, " '", path, "' holds more than ", kMaxTextBytes,
                        " bytes, the most a request's text may hold");
  }
  return text;
}

namespace {

// %* in a pattern: the message as the inside of a JSON string.
class JsonMessage final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    static constexpr char hex[] = "0123456789abcdef";
    for (char ch : std::string_view(msg.payload.data(), msg.payload.size())) {
      const auto c = static_cast<unsigned char>(ch);
      if (c == '"' || c == '\\') {
        dest.push_back('\\');
        dest.push_back(ch);
      } else if (c < 0x20) {
        const char esc[] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        dest.append(esc, esc + sizeof esc);
      } else {
        dest.push_back(ch);
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JsonMessage>(); }
};

}  // namespace

void apply_log_settings() {
  const LogSettings& s = log_settings();
  spdlog::set_level(spdlog::level::from_str(s.level));
  if (s.format == LogFormat::json) {
    auto f = std::make_unique<spdlog::pattern_formatter>();
    f->add_flag<JsonMessage>('*').set_pattern(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%e%z","logger":"%n","level":"%l","message":"%*"})");
    spdlog::set_formatter(std::move(f));
  }
}

LogSettings& log_settings() {
  static LogSettings settings;
  return settings;
}

}  // namespace starmesh::cli
