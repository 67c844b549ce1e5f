#pragma once
// What the CLI reads and how it logs: text files (or `-` for standard input, bounded like a
// request's text), and the process-wide log level and line format from flags or the
// environment.
#include <cstdint>
#include <string>

#include "starmesh/core/expected.hpp"

namespace starmesh::cli {

// The whole file at `path`, or standard input for "-"; at most kMaxTextBytes (a request's text
// bound) with an error naming `flag` beyond it.
Expected<std::string> read_text_input(const std::string& flag, const std::string& path);

// --log-level / STARMESH_LOG_LEVEL and --log-format / STARMESH_LOG_FORMAT (main sets them;
// every logger a command makes follows them).
enum class LogFormat : uint8_t { text, json };
struct LogSettings {
  std::string level = "info";  // trace, debug, info, warn, error, critical, off
  LogFormat format = LogFormat::text;
};
LogSettings& log_settings();
// Sets spdlog's level, and its line pattern on `logger` (the default logger when null): text
// ("[12:00:00.000] [router] [info] ...") or one JSON object per line ({"time", "logger",
// "level", "message"}, the message escaped).
void apply_log_settings();

}  // namespace starmesh::cli
