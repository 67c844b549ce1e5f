// starmesh: the one user-facing command line. Subcommands live in their own files.
#include <string>

#include "cli_io.hpp"
#include "commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"starmesh: long-context LLM serving with Star Attention"};
  app.require_subcommand(1);
  std::string version = std::string("starmesh ") + STARMESH_VERSION + "\nbuild: " + STARMESH_BUILD_INFO + "\nparts:";
#ifdef STARMESH_WITH_API
  version += " api";
#endif
#ifdef STARMESH_WITH_RUNTIME
  version += " mesh";
#endif
  version += " compute";
  app.set_version_flag("--version", version, "Print the version and build information, then exit");
  // Flags from a file: a [router] or [worker] section, keys as the long flags (`starmesh worker
  // --config mesh.toml`; the subcommands fall through to this option).
  app.set_config("--config", "", "Read flags from a TOML/INI file: a section per subcommand, e.g. [worker]");
  // Unknown keys in a --config file are errors, not silently ignored (subcommands inherit it).
  app.allow_config_extras(CLI::config_extras_mode::error);
  auto& logs = starmesh::cli::log_settings();
  app.add_option("--log-level", logs.level, "Log level (or $STARMESH_LOG_LEVEL)")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->envname("STARMESH_LOG_LEVEL")
      ->capture_default_str();
  std::string log_format = "text";
  app.add_option("--log-format", log_format, "Log lines as text or one JSON object each (or $STARMESH_LOG_FORMAT)")
      ->check(CLI::IsMember({"text", "json"}))
      ->envname("STARMESH_LOG_FORMAT")
      ->capture_default_str()
      ->each([&logs](const std::string& v) {
        logs.format = v == "json" ? starmesh::cli::LogFormat::json : starmesh::cli::LogFormat::text;
      });
  // Before any subcommand runs (CLI11 runs this app's callback first): every command's logs.
  app.parse_complete_callback([] { starmesh::cli::apply_log_settings(); });
  int exit_code = 0;
  starmesh::cli::add_generate_command(app, exit_code);
  starmesh::cli::add_eval_command(app, exit_code);
#ifdef STARMESH_WITH_API
  starmesh::cli::add_client_command(app, exit_code);
#endif
#ifdef STARMESH_WITH_RUNTIME
  starmesh::cli::add_router_command(app, exit_code);
  starmesh::cli::add_worker_command(app, exit_code);
  starmesh::cli::add_demo_command(app, exit_code);
#endif
  CLI11_PARSE(app, argc, argv);
  return exit_code;
}
