#include "starmesh/runtime/worker_membership.hpp"

#include <spdlog/spdlog.h>

#include <optional>

#include "starmesh/runtime/mesh_client.hpp"

namespace starmesh {

Expected<uint32_t> register_worker(caf::actor_system& sys, const RouterActor& router, const WorkerActor& worker,
                                   std::chrono::milliseconds timeout, const std::string& endpoint) {
  caf::scoped_actor self{sys};
  std::optional<WorkerInfo> info;
  Error error;
  self->request(worker, timeout, status_atom::value)
      .receive([&](WorkerInfo& i) { info = std::move(i); }, [&](caf::error& e) { error = to_error(e); });
  if (!info) return with_prefix("the worker did not describe itself: ", error);
  if (!endpoint.empty()) info->endpoint = endpoint;
  std::optional<uint32_t> id;
  self->request(router, timeout, register_atom::value, worker, *info)
      .receive([&](uint32_t i) { id = i; }, [&](caf::error& e) { error = to_error(e); });
  if (id) return *id;
  if (error.code == ErrorCode::timeout) error.message = "the router did not answer within " + format_seconds(timeout);
  return with_prefix("registration refused: ", error);
}

WorkerMembership::WorkerMembership(caf::actor_system& sys, WorkerActor worker, WorkerMembershipOptions options)
    : sys_(sys), worker_(std::move(worker)), options_(std::move(options)) {
  options_.worker_running->store(true);
  if (auto ptr = caf::actor_cast<caf::strong_actor_ptr>(worker_))
    ptr->get()->attach_functor([running = options_.worker_running] { running->store(false); });
}

WorkerMembership::~WorkerMembership() {
  if (watcher_) caf::anon_send_exit(watcher_, caf::exit_reason::user_shutdown);
}

Expected<uint32_t> WorkerMembership::join() {
  SM_ASSIGN(router, connect_router(sys_, options_.router_host, options_.router_port));
  SM_ASSIGN(id, register_worker(sys_, router, worker_, options_.register_timeout, options_.endpoint));
  watch(router);
  options_.registered->store(true);
  return id;
}

// A small actor that flags the router's going away.
void WorkerMembership::watch(const RouterActor& router) {
  if (watcher_) caf::anon_send_exit(watcher_, caf::exit_reason::user_shutdown);
  router_ = router;
  router_gone_->store(false);
  watcher_ = sys_.spawn([gone = router_gone_, router](caf::event_based_actor* self) -> caf::behavior {
    self->monitor(router);
    self->set_down_handler([=](caf::down_msg&) {
      *gone = true;
      self->quit();
    });
    return {[](tick_atom, uint64_t) {}};
  });
}

int WorkerMembership::run(const WaitForSignal& wait) {
  for (;;) {
    if (!options_.worker_running->load()) {
      spdlog::error("the worker actor ended unexpectedly: stopping");
      return 1;
    }
    if (int sig = wait(std::chrono::milliseconds(200))) {
      spdlog::info("signal {}: leaving the mesh", sig);
      options_.registered->store(false);  // not ready for new work while it drains
      if (!router_gone_->load()) leave(wait);
      return 0;
    }
    if (!router_gone_->load()) continue;
    options_.registered->store(false);
    const std::string at = options_.router_host + ":" + std::to_string(options_.router_port);
    if (options_.exit_with_router) {
      spdlog::error("the router at {} went away: stopping", at);
      return 1;
    }
    spdlog::warn("the router at {} went away; registering again when one answers there", at);
    caf::anon_send(worker_, drop_atom::value, uint64_t(0));  // its book of kept contexts went with it
    bool stop = false;
    if (!rejoin(wait, stop) || stop) return 0;
  }
}

// Once a second, until a router takes this worker again or a signal says stop.
bool WorkerMembership::rejoin(const WaitForSignal& wait, bool& stop) {
  for (;;) {
    if (int sig = wait(std::chrono::milliseconds(1000))) {
      spdlog::info("signal {}: stopping", sig);
      stop = true;
      return false;
    }
    auto again = join();
    if (again) {
      spdlog::info("registered again with the router at {}:{} as worker {}", options_.router_host, options_.router_port,
                   *again);
      return true;
    }
    if (again.code() != ErrorCode::unavailable) spdlog::warn("registering again: {}", again.error().message);
  }
}

// Leaving gracefully: the router stops placing requests here, the running ones finish (at
// most drain_timeout; a second signal cuts it short), then the worker may stop.
void WorkerMembership::leave(const WaitForSignal& wait) {
  caf::scoped_actor self{sys_};
  bool told = false;
  self->request(router_, std::chrono::seconds(2), leave_atom::value, worker_)
      .receive(
          [&](bool known) { told = known; },
          [&](caf::error& e) { spdlog::warn("could not tell the router that this worker leaves: {}", describe(e)); });
  if (!told) return;  // nobody will place work here anyway
  const auto until = std::chrono::steady_clock::now() + options_.drain_timeout;
  for (;;) {
    int64_t held = -1;
    self->request(worker_, std::chrono::seconds(2), status_atom::value)
        .receive([&](WorkerInfo& info) { held = info.kv_capacity - info.kv_free; }, [](caf::error&) {});
    if (held == 0) {
      spdlog::info("drained: no request holds KV here any more");
      return;
    }
    if (std::chrono::steady_clock::now() >= until) {
      spdlog::warn("stopping after {} of draining with {} KV tokens still held by running requests",
                   format_seconds(options_.drain_timeout), held);
      return;
    }
    if (int sig = wait(std::chrono::milliseconds(200))) {
      spdlog::warn("signal {} while draining: stopping now", sig);
      return;
    }
  }
}

}  // namespace starmesh
