#pragma once
// Subcommands of the `starmesh` CLI: each registers its options and returns the exit code
// through a callback run after parsing.
#include <CLI/CLI.hpp>

namespace starmesh::cli {

// `starmesh generate`: one model, one process, streaming tokens to stdout.
void add_generate_command(CLI::App& app, int& exit_code);

// `starmesh eval`: accuracy on synthetic long-context tasks, global vs star.
void add_eval_command(CLI::App& app, int& exit_code);

// `starmesh client ...`: talks to a starmesh server over the public API (Cap'n Proto).
void add_client_command(CLI::App& app, int& exit_code);

// `starmesh router`, `starmesh worker`, `starmesh demo`: the mesh (built with the runtime).
void add_router_command(CLI::App& app, int& exit_code);
void add_worker_command(CLI::App& app, int& exit_code);
void add_demo_command(CLI::App& app, int& exit_code);

}  // namespace starmesh::cli
