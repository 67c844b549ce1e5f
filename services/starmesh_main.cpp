// starmesh: the one user-facing command line. Subcommands live in their own files.
#include "commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"starmesh: long-context LLM serving with Star Attention"};
  app.require_subcommand(1);
  int exit_code = 0;
  starmesh::cli::add_generate_command(app, exit_code);
  CLI11_PARSE(app, argc, argv);
  return exit_code;
}
