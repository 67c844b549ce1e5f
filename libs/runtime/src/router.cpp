#include "starmesh/runtime/router.hpp"

#include <spdlog/spdlog.h>

#include <map>
#include <random>
#include <set>

#include "starmesh/runtime/admission_book.hpp"
#include "starmesh/runtime/removal_cost.hpp"
#include "starmesh/runtime/request_driver.hpp"

namespace starmesh {

Expected<std::shared_ptr<const RouterContext>> load_router_context(const RouterOptions& options) {
  SM_ASSIGN(config, load_llama_config(options.model_dir));
  SM_ASSIGN(tokenizer, Tokenizer::load(options.model_dir + "/tokenizer.json"));
  if (options.block_size <= 0)
    return make_error(ErrorCode::invalid_argument, "the default block size must be > 0, got ", options.block_size);
  const std::string sig = model_signature(config);
  auto context = std::make_shared<RouterContext>(RouterContext{options, std::move(config), std::move(tokenizer), sig});
  std::random_device entropy;
  context->tenant_salt = (uint64_t(entropy()) << 32) | entropy();
  return std::shared_ptr<const RouterContext>(std::move(context));
}

uint64_t tenant_tag(const RouterContext& context, const std::string& tenant) {
  // FNV-1a over the salt's bytes then the tenant's: the tag only has to spread tenants apart.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](uint8_t b) { h = (h ^ b) * 1099511628211ull; };
  for (int i = 0; i < 8; ++i) mix(uint8_t(context.tenant_salt >> (8 * i)));
  for (char c : tenant) mix(uint8_t(c));
  return h;
}

namespace {

struct RouterState {
  static inline const char* name = "router";
  std::shared_ptr<const RouterContext> context;
  std::unique_ptr<AdmissionBook> book;
  std::map<uint64_t, caf::typed_response_promise<Placement>> queued;  // answered when the book decides
  std::set<uint32_t> probing;                                         // workers with a liveness probe out
  std::map<uint32_t, metrics::Labels> cost_series;                    // starmesh_worker_removal_cost's children
  bool beating = false;                                               // the heartbeat timer is armed
  uint64_t next_request = 0;  // 0: options.first_request_id, on the first request
  // Running requests (shared with the exit functor, which runs after the state is gone).
  std::shared_ptr<std::map<uint64_t, RequestActor>> drivers = std::make_shared<std::map<uint64_t, RequestActor>>();
};

using RouterPtr = RouterActor::stateful_pointer<RouterState>;

const char* drop_reason(Decisions::Why why) {
  switch (why) {
    case Decisions::Why::evicted:
      return "to make room for other work";
    case Decisions::Why::ttl:
      return "unused for its TTL";
    case Decisions::Why::requested:
      return "as asked";
    case Decisions::Why::worker_left:
      return "its worker left";
    case Decisions::Why::worker_lost:
      return "its worker was lost";
    case Decisions::Why::superseded:
      return "another question encoded it again first, or it went meanwhile";
  }
  return "";
}

// starmesh_worker_removal_cost: a child per registered worker, gone with the worker.
void publish_removal_costs(RouterState& st, const std::vector<WorkerView>& view) {
  auto& family = st.context->metrics->worker_removal_cost;
  std::map<uint32_t, metrics::Labels> now;
  for (const WorkerView& w : view) {
    metrics::Labels labels{{"worker", std::to_string(w.id)}, {"endpoint", w.info.endpoint}};
    family.with(labels).set(double(removal_cost(st.book->load_on(w.id))));
    now.emplace(w.id, std::move(labels));
  }
  for (const auto& [id, labels] : st.cost_series)
    if (!now.count(id)) family.remove(labels);
  st.cost_series = std::move(now);
}

// The gauges, after every decision.
void publish(RouterState& st) {
  RouterMetrics& m = *st.context->metrics;
  int64_t capacity = 0, reserved = 0, staying_capacity = 0;
  int staying = 0;  // workers not draining: what the mesh keeps
  const auto view = st.book->members().view();
  for (const WorkerView& w : view) {
    capacity += w.info.kv_capacity;
    reserved += w.reserved;
    if (!w.draining) {
      ++staying;
      staying_capacity += w.info.kv_capacity;
    }
  }
  m.workers.set(double(view.size()));
  m.kv_capacity.set(double(capacity));
  m.kv_reserved.set(double(reserved));
  m.queued.set(double(st.book->queued()));
  m.kept_contexts.set(double(st.book->kept_contexts()));
  // The scale signal: kept contexts' KV is in `reserved` too, and counts by its own weight.
  const AdmissionBook::Load load = st.book->load();
  ScaleInputs in;
  in.workers = staying;
  in.kv_capacity = staying_capacity;
  in.kv_kept = load.kept_tokens;
  in.kv_reserved = std::max<int64_t>(reserved - load.kept_tokens, 0);
  in.queued_requests = int64_t(st.book->queued());
  in.queued_tokens = load.queued_tokens;
  in.running_requests = load.running;
  const ScaleDecision d = desired_workers(in, st.context->options.scale);
  m.desired_workers.set(d.desired);
  m.desired_workers_by_kv.set(d.by_kv);
  m.desired_workers_by_requests.set(d.by_requests);
  m.kv_demand.set(d.kv_demand);
  m.queued_tokens.set(double(load.queued_tokens));
  m.kept_tokens.set(double(load.kept_tokens));
  publish_removal_costs(st, view);
}

// Carries out what the book decided: answers queued requests, tells workers to drop kept
// contexts, arms timers.
void apply(RouterPtr self, Decisions& d) {
  auto& st = self->state;
  for (auto& a : d.answers) {
    auto p = st.queued.find(a.id);
    if (p == st.queued.end()) continue;  // its driver went away meanwhile
    st.context->metrics->queue_wait_seconds.observe(a.waited.count());
    if (a.placement)
      p->second.deliver(std::move(*a.placement));
    else
      p->second.deliver(mesh_error(a.placement.error()));
    st.queued.erase(p);
  }
  for (const auto& dropped : d.dropped) {
    if (dropped.reencode)
      spdlog::info("router: kept context {} lost its shards ({}); its next question encodes it again",
                   dropped.context_id, drop_reason(dropped.why));
    else
      spdlog::info("router: dropping kept context {} ({})", dropped.context_id, drop_reason(dropped.why));
    for (const WorkerActor& w : dropped.workers) caf::anon_send(w, drop_atom::value, dropped.context_id);
  }
  for (const TimerOrder& t : d.timers) {
    if (t.kind == TimerKind::queue_deadline)
      self->delayed_send(self, t.after, deadline_atom::value, t.id);
    else
      self->delayed_send(self, t.after, ttl_atom::value, t.id);
  }
  publish(st);
}

// Turns a book call into the handler's result: the placement, a refusal, or a promise the
// book keeps (the request waits in its queue).
template <class Call>
caf::result<Placement> decide(RouterPtr self, uint64_t id, Call&& call) {
  Decisions d;
  Admission a = call(self->clock().now(), d);
  apply(self, d);
  if (a.kind == Admission::Kind::placed) return std::move(*a.placement);
  if (a.kind == Admission::Kind::refused) return mesh_error(std::move(a.error));
  auto promise = self->make_response_promise<Placement>();
  self->state.queued[id] = promise;
  return promise;
}

// Whatever a request held or waited for goes (it ended, or its driver went away).
void release(RouterPtr self, uint64_t id) {
  self->state.drivers->erase(id);
  self->state.queued.erase(id);
  Decisions d;
  self->state.book->release(id, self->clock().now(), d);
  apply(self, d);
}

// A worker that did not answer its heartbeat in time: out of the mesh, its requests fail now
// (naming it), its kept contexts go, and it is told to stop (it gets the message if it wakes).
void worker_lost(RouterPtr self, uint32_t id, const WorkerActor& handle) {
  auto& st = self->state;
  auto gone = st.book->members().remove(id);
  if (!gone) return;
  const auto& opt = st.context->options;
  const Error why{worker_name(id, gone->info.endpoint) + " stopped answering: no heartbeat within " +
                      format_seconds(opt.liveness_timeout) + "; it was taken out of the mesh",
                  ErrorCode::unavailable};
  spdlog::warn("router: {} ({} workers remain)", why.message, st.book->members().size());
  for (uint64_t request : st.book->requests_on(id))
    if (auto d = st.drivers->find(request); d != st.drivers->end())
      self->send(d->second, failed_atom::value, request, why);
  Decisions d;
  st.book->worker_lost(id, self->clock().now(), d);
  apply(self, d);
  caf::anon_send_exit(handle, caf::exit_reason::user_shutdown);
}

// Asks every worker without a probe out for its status; one that does not answer within the
// liveness timeout is lost. Re-arms itself.
void heartbeat(RouterPtr self) {
  auto& st = self->state;
  const auto timeout = st.context->options.liveness_timeout;
  for (const auto& probe : st.book->members().handles()) {
    const uint32_t id = probe.first;  // copies: lambdas cannot capture structured bindings before clang 16
    const WorkerActor handle = probe.second;
    if (!st.probing.insert(id).second) continue;
    self->request(handle, timeout, status_atom::value)
        .then([=](WorkerInfo&) { self->state.probing.erase(id); },
              [=](caf::error& e) {
                self->state.probing.erase(id);
                if (e == caf::sec::request_timeout) worker_lost(self, id, handle);
              });
  }
  self->delayed_send(self, st.context->options.heartbeat, beat_atom::value);
}

void on_down(RouterPtr self, const caf::down_msg& dm) {
  auto& st = self->state;
  if (auto gone = st.book->members().remove(dm.source)) {
    spdlog::warn("router: {} left the mesh ({} workers remain)", worker_name(gone->id, gone->info.endpoint),
                 st.book->members().size());
    Decisions d;
    st.book->worker_lost(gone->id, self->clock().now(), d);
    apply(self, d);
    return;
  }
  for (const auto& [id, driver] : *st.drivers)
    if (driver.address() == dm.source) return release(self, id);
}

RouterActor::behavior_type router(RouterPtr self, std::shared_ptr<const RouterContext> context) {
  auto& st = self->state;
  st.context = context;
  st.book = std::make_unique<AdmissionBook>(context->model, context->options.admission);
  // A router that stops takes its running requests with it (their clients are told).
  self->attach_functor([drivers = st.drivers] {
    for (auto& [id, d] : *drivers) caf::anon_send_exit(d, caf::exit_reason::user_shutdown);
  });
  self->set_down_handler([=](caf::down_msg& dm) { on_down(self, dm); });
  auto now = [=] { return self->clock().now(); };
  return {
      [=](register_atom, WorkerActor& worker, WorkerInfo& info) -> caf::result<uint32_t> {
        if (!worker) return mesh_error(ErrorCode::invalid_argument, "registration without a worker handle");
        const std::string endpoint = info.endpoint, device = info.device;
        const int64_t capacity = info.kv_capacity;
        auto id = self->state.book->members().add(worker, std::move(info));
        if (!id) {
          spdlog::warn("router: refused a worker: {}", id.error().message);
          return mesh_error(id.error());
        }
        self->monitor(worker);
        if (!self->state.beating && self->state.context->options.heartbeat.count() > 0) {
          self->state.beating = true;
          self->delayed_send(self, self->state.context->options.heartbeat, beat_atom::value);
        }
        Decisions d;
        self->state.book->capacity_changed(now(), d);
        apply(self, d);
        spdlog::info("router: {} joined ({}, {} KV tokens; {} workers)", worker_name(*id, endpoint), device, capacity,
                     self->state.book->members().size());
        return *id;
      },
      [=](generate_atom, GenerateOrder& order, ClientSinkActor& client) -> Ticket {
        auto setup = std::make_shared<DriverSetup>();
        setup->context = self->state.context;
        setup->router = self;
        if (self->state.next_request == 0) self->state.next_request = self->state.context->options.first_request_id;
        setup->request_id = self->state.next_request++;
        setup->order = std::move(order);
        setup->client = std::move(client);
        auto driver = self->spawn(request_driver, setup);
        self->monitor(driver);
        self->state.drivers->emplace(setup->request_id, driver);
        return Ticket{setup->request_id, driver};
      },
      [=](place_atom, uint64_t id, PlacementAsk& ask) {
        return decide(self, id, [&](auto t, Decisions& d) { return self->state.book->admit(id, ask, t, d); });
      },
      [=](attach_atom, uint64_t id, ContextId& name, PlacementAsk& ask) -> caf::result<Placement> {
        auto context_id = self->state.book->resolve(name, ask.tenant);
        RouterMetrics& m = *self->state.context->metrics;
        (context_id ? m.kept_context_hits : m.kept_context_misses).inc();
        if (!context_id) return mesh_error(context_id.error());
        auto answer = decide(self, id, [&](auto t, Decisions& d) {
          return self->state.book->attach(id, *context_id, ask.local_tokens, t, d, ask.priority);
        });
        return answer;
      },
      [=](deadline_atom, uint64_t id) {
        Decisions d;
        self->state.book->queue_deadline(id, now(), d);
        apply(self, d);
      },
      [=](ttl_atom, uint64_t context_id) {
        Decisions d;
        self->state.book->context_ttl(context_id, now(), d);
        apply(self, d);
      },
      [=](beat_atom) { heartbeat(self); },
      [=](release_atom, uint64_t id) { release(self, id); },
      [=](replan_atom, uint64_t id) -> caf::result<uint64_t> {
        // The old attempt's KV goes now (its workers were told to free); the request keeps its
        // driver under a fresh id, so nothing of the old attempt can be mistaken for the new.
        auto& drivers = *self->state.drivers;
        auto it = drivers.find(id);
        if (it == drivers.end())
          return mesh_error(ErrorCode::not_found,
                            "request " + std::to_string(id) + " is not running: nothing to plan again");
        const RequestActor driver = it->second;
        drivers.erase(it);
        self->state.queued.erase(id);
        Decisions d;
        self->state.book->release(id, now(), d);
        apply(self, d);
        if (self->state.next_request == 0) self->state.next_request = self->state.context->options.first_request_id;
        const uint64_t fresh = self->state.next_request++;
        drivers.emplace(fresh, driver);
        return fresh;
      },
      [=](keep_atom, uint64_t id, ContextId& name, std::string& tenant, std::vector<int32_t>& tokens) -> bool {
        // The request ends; its shards become kept context `id`, `name` to its tenant (or, for
        // a question that encoded its kept context again, that context's).
        self->state.drivers->erase(id);
        Decisions d;
        const bool kept = self->state.book->keep(id, now(), d, name, std::move(tenant), std::move(tokens));
        apply(self, d);
        return kept;
      },
      [=](drop_atom, ContextId& name, std::string& tenant) -> caf::result<bool> {
        auto context_id = self->state.book->resolve(name, tenant);
        if (!context_id) return mesh_error(context_id.error());
        Decisions d;
        self->state.book->drop(*context_id, now(), d);
        apply(self, d);
        return true;
      },
      [=](members_atom) -> std::vector<WorkerView> { return self->state.book->members().view(); },
      [=](leave_atom, WorkerActor& worker) -> bool {
        auto w = self->state.book->members().drain(worker.address());
        if (!w) return false;
        spdlog::info("router: {} is leaving: it finishes its requests and gets no new ones",
                     worker_name(w->id, w->info.endpoint));
        Decisions d;
        self->state.book->worker_leaving(w->id, now(), d);
        apply(self, d);
        return true;
      },
  };
}

}  // namespace

RouterActor spawn_router(caf::actor_system& sys, std::shared_ptr<const RouterContext> context) {
  return sys.spawn(router, std::move(context));
}

}  // namespace starmesh
