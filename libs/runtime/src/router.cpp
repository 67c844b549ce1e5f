#include "starmesh/runtime/router.hpp"

#include <spdlog/spdlog.h>

#include <map>

#include "starmesh/runtime/context_worker.hpp"
#include "starmesh/runtime/membership.hpp"
#include "starmesh/runtime/request_driver.hpp"

namespace starmesh {

Expected<std::shared_ptr<const RouterContext>> load_router_context(const RouterOptions& options) {
  SM_ASSIGN(config, load_llama_config(options.model_dir));
  SM_ASSIGN(tokenizer, Tokenizer::load(options.model_dir + "/tokenizer.json"));
  if (options.block_size <= 0) return make_error("the default block size must be > 0, got ", options.block_size);
  const std::string sig = model_signature(config);
  return std::shared_ptr<const RouterContext>(new RouterContext{options, std::move(config), std::move(tokenizer), sig});
}

namespace {

// The membership gauges, after every change of membership or placement.
void publish_members(const Membership& m, RouterMetrics& metrics) {
  int64_t capacity = 0, reserved = 0;
  const auto view = m.view();
  for (const WorkerView& w : view) {
    capacity += w.info.kv_capacity;
    reserved += w.reserved;
  }
  metrics.workers.set(double(view.size()));
  metrics.kv_capacity.set(double(capacity));
  metrics.kv_reserved.set(double(reserved));
}

struct RouterState {
  static inline const char* name = "router";
  std::shared_ptr<const RouterContext> context;
  std::unique_ptr<Membership> members;
  uint64_t next_request = 1;
  // Running requests (shared with the exit functor, which runs after the state is gone).
  std::shared_ptr<std::map<uint64_t, RequestActor>> drivers = std::make_shared<std::map<uint64_t, RequestActor>>();
};

RouterActor::behavior_type router(RouterActor::stateful_pointer<RouterState> self,
                                  std::shared_ptr<const RouterContext> context) {
  self->state.context = context;
  self->state.members = std::make_unique<Membership>(context->model);
  // A router that stops takes its running requests with it (their clients are told).
  self->attach_functor([drivers = self->state.drivers] {
    for (auto& [id, d] : *drivers) caf::anon_send_exit(d, caf::exit_reason::user_shutdown);
  });
  self->set_down_handler([=](caf::down_msg& dm) {
    if (auto gone = self->state.members->remove(dm.source)) {
      spdlog::warn("router: {} left the mesh ({} workers remain)", worker_name(gone->id, gone->info.endpoint),
                   self->state.members->size());
      publish_members(*self->state.members, *self->state.context->metrics);
    }
  });
  return {
      [=](register_atom, WorkerActor& worker, WorkerInfo& info) -> caf::result<uint32_t> {
        if (!worker) return mesh_error("registration without a worker handle");
        const std::string endpoint = info.endpoint;
        const int64_t capacity = info.kv_capacity;
        const std::string device = info.device;
        auto id = self->state.members->add(worker, std::move(info));
        if (!id) {
          spdlog::warn("router: refused a worker: {}", id.error().message);
          return mesh_error(id.error().message);
        }
        self->monitor(worker);
        publish_members(*self->state.members, *self->state.context->metrics);
        spdlog::info("router: {} joined ({}, {} KV tokens; {} workers)", worker_name(*id, endpoint), device, capacity,
                     self->state.members->size());
        return *id;
      },
      [=](generate_atom, GenerateOrder& order, ClientSinkActor& client) -> Ticket {
        auto setup = std::make_shared<DriverSetup>();
        setup->context = self->state.context;
        setup->router = self;
        setup->request_id = self->state.next_request++;
        setup->order = std::move(order);
        setup->client = std::move(client);
        auto driver = self->spawn(request_driver, setup);
        self->state.drivers->emplace(setup->request_id, driver);
        return Ticket{setup->request_id, driver};
      },
      [=](place_atom, uint64_t id, PlacementAsk& ask) -> caf::result<Placement> {
        auto p = self->state.members->place(id, ask);
        if (!p) return mesh_error(p.error().message);
        publish_members(*self->state.members, *self->state.context->metrics);
        return std::move(*p);
      },
      [=](release_atom, uint64_t id) {
        self->state.members->release(id);
        self->state.drivers->erase(id);
        publish_members(*self->state.members, *self->state.context->metrics);
      },
      [=](members_atom) -> std::vector<WorkerView> { return self->state.members->view(); },
  };
}

}  // namespace

RouterActor spawn_router(caf::actor_system& sys, std::shared_ptr<const RouterContext> context) {
  return sys.spawn(router, std::move(context));
}

}  // namespace starmesh
