// starmesh: the one user-facing command line. Subcommands live in their own files.
#include <string>

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
