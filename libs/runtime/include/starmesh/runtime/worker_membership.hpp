#pragma once
// A worker process's life in the mesh, apart from serving: register with the router, watch
// it, register again with the next router at the same address when it goes away (the old
// one's kept contexts are dropped: the new one knows none), and leave gracefully (tell the
// router, let the running requests finish, then stop). `starmesh worker` wires it up; the
// signals that end it come from outside through `wait`.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "starmesh/core/expected.hpp"
#include "starmesh/runtime/messages.hpp"

namespace starmesh {

// Registers `worker` with `router` and waits for its id (at most `timeout`). `endpoint`,
// when given, replaces the worker's own (the port is known only once the worker is published).
Expected<uint32_t> register_worker(caf::actor_system& sys, const RouterActor& router, const WorkerActor& worker,
                                   std::chrono::milliseconds timeout, const std::string& endpoint = {});

struct WorkerMembershipOptions {
  std::string router_host;
  uint16_t router_port = 0;
  std::string endpoint;  // where the worker is published, for the router's messages
  std::chrono::milliseconds register_timeout{10000};
  std::chrono::milliseconds drain_timeout{30000};
  bool exit_with_router = false;  // stop when the router goes away instead of waiting for the next
  // Kept true while the worker is registered with a live router (readiness probes read it).
  std::shared_ptr<std::atomic<bool>> registered = std::make_shared<std::atomic<bool>>(false);
  // True from construction while the worker actor runs (liveness probes read it too).
  std::shared_ptr<std::atomic<bool>> worker_running = std::make_shared<std::atomic<bool>>(false);
};

class WorkerMembership {
 public:
  // Returns the signal that arrived within the wait (0: none): how a stop reaches the loop.
  using WaitForSignal = std::function<int(std::chrono::milliseconds)>;

  WorkerMembership(caf::actor_system& sys, WorkerActor worker, WorkerMembershipOptions options);
  ~WorkerMembership();

  // Connects to the router and registers; the error says why not.
  Expected<uint32_t> join();

  // Serves until a signal (then leaves gracefully, a second signal cutting the drain short),
  // until the worker actor ends (it must not stay registered-looking without it), or, with
  // exit_with_router, until the router goes away. Returns the process exit code: 0 after a
  // signal, 1 otherwise.
  int run(const WaitForSignal& wait);

 private:
  void watch(const RouterActor& router);
  void leave(const WaitForSignal& wait);
  bool rejoin(const WaitForSignal& wait, bool& stop);

  caf::actor_system& sys_;
  WorkerActor worker_;
  WorkerMembershipOptions options_;
  RouterActor router_;
  caf::actor watcher_;
  std::shared_ptr<std::atomic<bool>> router_gone_ = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace starmesh
