#pragma once
// A whole mesh on this machine, as real processes: a `starmesh router` and N `starmesh
// worker` children of this program, on 127.0.0.1 with free ports, and a MeshClient to the
// router. `starmesh demo` and the integration tests use it. Children get SIGTERM (then
// SIGKILL after a grace period) on stop() or destruction.
#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "starmesh/runtime/mesh_client.hpp"
#include "starmesh/runtime/mesh_config.hpp"

namespace starmesh {

struct LocalMeshOptions {
  std::string program;  // the `starmesh` executable
  std::string model_dir;
  int workers = 4;
  std::string transport = "ucx-shm";                  // worker --transport
  std::string device = "cpu";                         // worker --device
  int64_t capacity = 65536;                           // worker --capacity (KV tokens), for every worker
  std::vector<int64_t> capacities;                    // per worker, overrides `capacity` where given
  int threads_per_worker = 1;                         // worker --threads
  int64_t block_size = 1024;                          // router --block-size
  std::vector<std::string> router_args, worker_args;  // extra flags
  bool metrics = false;  // every child serves /metrics on a free 127.0.0.1 port (metrics_ports())
  std::string log_dir;   // children's stdout/stderr go to LOG_DIR/router.log, worker-N.log; empty: inherited
  std::chrono::milliseconds start_timeout{30000};
  MeshTls tls;  // given: every child speaks mutual TLS with these files (the client must too)
};

class LocalMesh {
 public:
  // Starts the router, then the workers, and waits until every worker has registered.
  static Expected<std::unique_ptr<LocalMesh>> start(caf::actor_system& sys, const LocalMeshOptions& options);
  ~LocalMesh();
  LocalMesh(const LocalMesh&) = delete;
  LocalMesh& operator=(const LocalMesh&) = delete;

  uint16_t router_port() const { return router_port_; }
  pid_t router_pid() const { return router_; }
  // With options.metrics: the router's /metrics port, then each worker's.
  const std::vector<uint16_t>& metrics_ports() const { return metrics_ports_; }
  MeshClient& client() { return *client_; }
  const std::vector<pid_t>& worker_pids() const { return workers_; }
  // Sends `signal` to worker i (tests: a worker that dies, or stops answering with SIGSTOP).
  // After SIGTERM, SIGINT or SIGKILL the worker is on its way out: later waits for workers to
  // register neither wait for it nor take its exit for a failure.
  Status signal_worker(size_t i, int signal);
  // Kills worker i if it still runs (SIGKILL), starts a fresh one in its place and waits until
  // every live worker has registered (tests: a mesh that loses workers and gets them back).
  Status restart_worker(caf::actor_system& sys, size_t i);
  // Starts one more worker (options' capacity) and waits until it has registered; its index.
  Expected<size_t> add_worker(caf::actor_system& sys);
  // Kills the router (SIGKILL: no goodbye), starts a new one on the same port, and waits until
  // every live worker has registered with it again; client() then talks to the new router.
  Status restart_router(caf::actor_system& sys);
  // The last lines of the children's logs (when log_dir is set), for failure messages.
  std::string log_tail(size_t lines = 20) const;
  // Stops every child: SIGTERM, then SIGKILL after `grace`. Idempotent.
  void stop(std::chrono::milliseconds grace = std::chrono::milliseconds(5000));

 private:
  LocalMesh() = default;
  Status spawn_router(uint16_t port, std::chrono::steady_clock::time_point until);  // port 0: any free one
  Status spawn_worker(size_t i);  // into slot i, registering with the router at router_port_
  // With options.metrics: the flags that make child `name` serve /metrics, its port file.
  std::vector<std::string> metrics_flags(const std::string& name) const;
  Status connect_and_wait(caf::actor_system& sys, std::chrono::steady_clock::time_point until);
  std::string worker_port_file(size_t i) const { return dir_ + "/worker-" + std::to_string(i + 1) + ".port"; }
  std::string dir_;  // port files
  LocalMeshOptions options_;
  pid_t router_ = -1;
  std::vector<pid_t> workers_;
  std::vector<bool> ending_;  // per worker: told to end (signal_worker), not waited for
  uint16_t router_port_ = 0;
  std::vector<uint16_t> metrics_ports_;
  std::unique_ptr<MeshClient> client_;
};

}  // namespace starmesh
