#pragma once
// Subcommands of the `starmesh` CLI: each registers its options and returns the exit code
// through a callback run after parsing.
#include <CLI/CLI.hpp>

namespace starmesh::cli {

// `starmesh generate`: one model, one process, streaming tokens to stdout.
void add_generate_command(CLI::App& app, int& exit_code);

}  // namespace starmesh::cli
