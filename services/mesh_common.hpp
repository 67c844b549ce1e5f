#pragma once
// What `starmesh router`, `worker` and `demo` share: host:port parsing, the port file,
// logs on stderr, waiting for SIGINT/SIGTERM, and the main actor's lifetime.
#include <CLI/CLI.hpp>
#include <atomic>
#include <caf/all.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "starmesh/comm/ucx_transport.hpp"
#include "starmesh/core/expected.hpp"
#include "starmesh/metrics/http_endpoint.hpp"
#include "starmesh/runtime/mesh_config.hpp"

namespace starmesh::cli {

struct HostPort {
  std::string host;
  uint16_t port = 0;
};
// "127.0.0.1:7400" (port 0: any free one).
Expected<HostPort> parse_host_port(const std::string& text, const char* flag);

// --transport (ucx-tcp, ucx-shm, ucx-auto) and --net-devices as UCX options.
Expected<UcxOptions> ucx_options(const std::string& transport, const std::string& net_devices);

// A flag in seconds as a duration (the caller has checked its range).
inline std::chrono::milliseconds seconds_flag(double seconds) {
  return std::chrono::milliseconds(int64_t(seconds * 1000));
}

// Writes `port` to `path` (atomically: a reader never sees half a number).
Status write_port_file(const std::string& path, uint16_t port);

// The /metrics, /healthz and /readyz endpoint on `listen` (empty: none, null returned); its
// port goes to `port_file` when one is given.
// The name clients (the HTTP door's "model") and metrics (starmesh_build_info) know the
// model by: its folder's name.
std::string served_model_name(const std::string& model_dir);

Expected<std::unique_ptr<metrics::HttpEndpoint>> serve_metrics(const metrics::Registry& registry,
                                                               const std::string& listen, const std::string& port_file,
                                                               metrics::HealthChecks health = {});

// /healthz: `running` (track_running) says the main actor runs.
std::function<Status()> live_while(std::shared_ptr<const std::atomic<bool>> running, std::string what);

// spdlog's default logger on stderr (stdout is for answers).
void log_to_stderr(const std::string& name);

// --tls-ca, --tls-cert, --tls-key: the mesh's mutual TLS (all three, or none).
void add_tls_flags(CLI::App& cmd, MeshTls& tls);

// `running` turns true now and false when `actor` terminates, for whatever reason: a process
// whose main actor died must not stay up behind a healthy-looking endpoint.
template <class Handle>
void track_running(const Handle& actor, const std::shared_ptr<std::atomic<bool>>& running) {
  running->store(true);
  auto ptr = caf::actor_cast<caf::strong_actor_ptr>(actor);
  if (ptr) ptr->get()->attach_functor([running] { running->store(false); });
}

// Sends `actor` an exit message when the scope ends (every return path of a command), so the
// actor system's destructor does not wait forever for it.
template <class Handle>
struct StopOnExit {
  Handle actor;
  ~StopOnExit() {
    if (actor) caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
  }
};

// This process gets SIGTERM when the process that started it ends, however it ends (for
// children of a launcher such as `starmesh demo`: they must not outlive it).
void exit_with_parent();

// Raises this process's open-file limit to its hard limit (every connection and UCX endpoint
// takes a descriptor; the soft default of 1024 runs out first). Returns the limit now.
int64_t raise_open_file_limit();

// Blocks SIGINT and SIGTERM in this thread and every thread started after: call first in
// main, then wait_for_signal() picks them up.
void block_stop_signals();
// The signal that arrived within `timeout`, or 0.
int wait_for_signal(std::chrono::milliseconds timeout);

}  // namespace starmesh::cli
