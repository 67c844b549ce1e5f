#include "starmesh/runtime/router.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <deque>
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

// A request waiting for KV capacity (first come, first served).
struct Queued {
  uint64_t id = 0;
  PlacementAsk ask;  // a question over a kept context: context_id set, ask.local_tokens only
  caf::typed_response_promise<Placement> promise;
  std::chrono::steady_clock::time_point since;
  uint64_t context_id = 0;
};

// A kept context: where its shards are, how many requests use it now, when it was last used.
struct Kept {
  Placement placement;
  int in_use = 0;
  bool drop_when_idle = false;
  caf::actor_clock::time_point last_used;  // the actor clock: tests move it by hand
};

struct RouterState {
  static inline const char* name = "router";
  std::shared_ptr<const RouterContext> context;
  std::unique_ptr<Membership> members;
  std::deque<Queued> queue;
  std::map<uint64_t, Placement> placements;  // running requests placed on fresh shards
  std::map<uint64_t, Kept> kept;              // by context id
  std::map<uint64_t, uint64_t> attached;      // request id -> the kept context it uses
  uint64_t next_request = 1;
  // Running requests (shared with the exit functor, which runs after the state is gone).
  std::shared_ptr<std::map<uint64_t, RequestActor>> drivers = std::make_shared<std::map<uint64_t, RequestActor>>();
};

using RouterPtr = RouterActor::stateful_pointer<RouterState>;

// Forgets a kept context: its KV is released here and on its workers.
void drop_context(RouterPtr self, uint64_t context_id) {
  auto& st = self->state;
  auto k = st.kept.find(context_id);
  if (k == st.kept.end()) return;
  st.members->release(context_key(context_id));
  for (const PlacedHost& h : k->second.placement.hosts) caf::anon_send(h.worker, drop_atom::value, context_id);
  st.kept.erase(k);
  st.context->metrics->kept_contexts.set(double(st.kept.size()));
}

// Checks the context again once it may have been idle for the TTL (the tick handler).
void arm_context_ttl(RouterPtr self, uint64_t context_id) {
  const auto ttl = self->state.context->options.context_ttl;
  if (ttl.count() > 0) self->delayed_send(self, ttl, tick_atom::value, context_id);
}

// A request that asked a kept context ended: the context is idle again once nobody asks it
// (then it goes if a drop waited for that, else its TTL starts).
void detach(RouterPtr self, uint64_t request_id) {
  auto& st = self->state;
  auto a = st.attached.find(request_id);
  if (a == st.attached.end()) return;
  auto k = st.kept.find(a->second);
  st.attached.erase(a);
  if (k == st.kept.end() || --k->second.in_use > 0) return;
  k->second.last_used = self->clock().now();
  if (k->second.drop_when_idle) drop_context(self, k->first);
  else arm_context_ttl(self, k->first);
}

// Drops the least recently used kept context no request uses; false if there is none.
bool evict_one(RouterPtr self) {
  auto& st = self->state;
  auto victim = st.kept.end();
  for (auto it = st.kept.begin(); it != st.kept.end(); ++it)
    if (it->second.in_use == 0 && (victim == st.kept.end() || it->second.last_used < victim->second.last_used))
      victim = it;
  if (victim == st.kept.end()) return false;
  spdlog::info("router: dropping kept context {} to make room", victim->first);
  drop_context(self, victim->first);
  return true;
}

// Places a request, dropping idle kept contexts (oldest first) while that is what it takes.
Expected<Placement> place_evicting(RouterPtr self, uint64_t id, const PlacementAsk& ask) {
  auto& st = self->state;
  for (;;) {
    auto p = st.members->place(id, ask);
    if (p) {
      st.placements[id] = *p;
      return p;
    }
    if (!st.members->fits_when_idle(ask) || !evict_one(self)) return p;
  }
}

std::string not_kept(uint64_t context_id) {
  return "context " + std::to_string(context_id) +
         " is not kept (dropped to make room for other work, or never kept): send the context again";
}

// Books a question's query tokens on its kept context's query host, dropping other idle
// contexts while that is what it takes. The context counts the question as a user from the
// moment it queues (attached), so nothing drops it meanwhile.
Expected<Placement> try_attach(RouterPtr self, uint64_t id, uint64_t context_id, int64_t local_tokens) {
  auto& st = self->state;
  auto k = st.kept.find(context_id);
  if (k == st.kept.end()) return make_error(not_kept(context_id));
  const PlacedHost& q = k->second.placement.hosts.back();
  for (;;) {
    const Status booked = st.members->reserve_exact(id, {{q.worker_id, local_tokens}});
    if (booked) break;
    if (!evict_one(self)) return make_error("context ", context_id, ": ", booked.message());
  }
  k->second.last_used = self->clock().now();
  Placement out = k->second.placement;
  out.hosts.back().reserve = (q.end - q.begin) + local_tokens;
  return out;
}

// Whether the question's query tokens fit its query host once no other request holds KV there.
bool attach_fits_when_idle(RouterPtr self, uint64_t context_id, int64_t local_tokens) {
  auto& st = self->state;
  auto k = st.kept.find(context_id);
  if (k == st.kept.end()) return false;
  const PlacedHost& q = k->second.placement.hosts.back();
  auto w = st.members->find(q.worker_id);
  return w && !w->draining && w->info.kv_free - (q.end - q.begin) >= local_tokens;
}

// A request (context_id 0) or a question over a kept context: placed now, or why not.
Expected<Placement> try_place(RouterPtr self, uint64_t id, const PlacementAsk& ask, uint64_t context_id) {
  return context_id != 0 ? try_attach(self, id, context_id, ask.local_tokens) : place_evicting(self, id, ask);
}

// Whether it would be placed once no other request held KV (worth waiting for).
bool fits_when_idle(RouterPtr self, const PlacementAsk& ask, uint64_t context_id) {
  return context_id != 0 ? attach_fits_when_idle(self, context_id, ask.local_tokens)
                         : self->state.members->fits_when_idle(ask);
}

// Why it can never be placed (place() gives the numbers for a request).
std::string never_fits(RouterPtr self, uint64_t id, const PlacementAsk& ask, uint64_t context_id) {
  auto& st = self->state;
  if (context_id == 0) return st.members->place(id, ask).error().message;
  if (!st.kept.count(context_id)) return not_kept(context_id);
  return "context " + std::to_string(context_id) + ": its query host cannot hold " + std::to_string(ask.local_tokens) +
         " query and generated tokens beside it";
}

// Places queued requests in arrival order while they fit; refuses those that no longer fit
// even an idle mesh (a worker left). Called whenever KV is freed or a worker comes or goes.
void drain_queue(RouterPtr self) {
  auto& st = self->state;
  RouterMetrics& m = *st.context->metrics;
  for (auto it = st.queue.begin(); it != st.queue.end();) {
    if (!fits_when_idle(self, it->ask, it->context_id)) {  // cannot fit now either
      it->promise.deliver(mesh_error(never_fits(self, it->id, it->ask, it->context_id)));
      const uint64_t gone = it->id;
      it = st.queue.erase(it);
      detach(self, gone);
      continue;
    }
    if (it != st.queue.begin()) break;  // first come, first served
    auto p = try_place(self, it->id, it->ask, it->context_id);
    if (!p) break;
    m.queue_wait_seconds.observe(seconds_since(it->since));
    it->promise.deliver(std::move(*p));
    it = st.queue.erase(it);
  }
  m.queued.set(double(st.queue.size()));
  publish_members(*st.members, m);
}

// The admission of a request or of a question over a kept context: placed now when nobody
// waits and it fits (nobody jumps the queue: it would take KV the head waits for), refused
// when it can never fit or the queue is full, else queued until KV frees or its deadline.
// `refused` says which way it went.
caf::result<Placement> admit(RouterPtr self, uint64_t id, PlacementAsk ask, uint64_t context_id, bool& refused) {
  auto& st = self->state;
  const RouterOptions& opt = st.context->options;
  refused = true;
  if (st.queue.empty()) {
    auto p = try_place(self, id, ask, context_id);
    if (p) {
      refused = false;
      publish_members(*st.members, *st.context->metrics);
      return std::move(*p);
    }
    if (!fits_when_idle(self, ask, context_id) || opt.queue_timeout.count() == 0) return mesh_error(p.error().message);
  } else if (!fits_when_idle(self, ask, context_id)) {
    return mesh_error(never_fits(self, id, ask, context_id));
  }
  if (st.queue.size() >= opt.max_queued)
    return mesh_error("the router is busy: " + std::to_string(st.queue.size()) +
                      " requests already wait for KV capacity; try again later or add workers");
  refused = false;
  st.queue.push_back(
      {id, std::move(ask), self->make_response_promise<Placement>(), std::chrono::steady_clock::now(), context_id});
  st.context->metrics->queued.set(double(st.queue.size()));
  self->delayed_send(self, opt.queue_timeout, tick_atom::value, id);
  return st.queue.back().promise;
}

RouterActor::behavior_type router(RouterActor::stateful_pointer<RouterState> self,
                                  std::shared_ptr<const RouterContext> context) {
  self->state.context = context;
  self->state.members = std::make_unique<Membership>(context->model);
  // A router that stops takes its running requests with it (their clients are told).
  self->attach_functor([drivers = self->state.drivers] {
    for (auto& [id, d] : *drivers) caf::anon_send_exit(d, caf::exit_reason::user_shutdown);
  });
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    if (auto gone = st.members->remove(dm.source)) {
      spdlog::warn("router: {} left the mesh ({} workers remain)", worker_name(gone->id, gone->info.endpoint),
                   st.members->size());
      std::vector<uint64_t> lost;  // kept contexts with a shard on it
      for (const auto& [cid, k] : st.kept)
        for (const PlacedHost& h : k.placement.hosts)
          if (h.worker_id == gone->id) lost.push_back(cid);
      for (uint64_t cid : lost) {
        st.kept[cid].in_use = 0;  // requests on it fail on their own (their worker went away)
        drop_context(self, cid);
      }
      drain_queue(self);
      return;
    }
    // A driver ended: whatever it held or waited for goes (normally it released already).
    for (auto it = st.drivers->begin(); it != st.drivers->end(); ++it) {
      if (it->second.address() != dm.source) continue;
      const uint64_t id = it->first;
      st.drivers->erase(it);
      std::erase_if(st.queue, [id](const Queued& q) { return q.id == id; });
      st.members->release(id);
      st.placements.erase(id);
      detach(self, id);
      drain_queue(self);
      return;
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
        drain_queue(self);  // publishes the membership too
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
        self->monitor(driver);
        self->state.drivers->emplace(setup->request_id, driver);
        return Ticket{setup->request_id, driver};
      },
      [=](place_atom, uint64_t id, PlacementAsk& ask) -> caf::result<Placement> {
        bool refused = false;
        return admit(self, id, std::move(ask), 0, refused);
      },
      [=](tick_atom, uint64_t id) {  // a queued request's wait is over, or a kept context's TTL
        auto& st = self->state;
        if (auto k = st.kept.find(id); k != st.kept.end()) {
          const auto idle = self->clock().now() - k->second.last_used;
          if (k->second.in_use == 0 && idle >= st.context->options.context_ttl) {
            spdlog::info("router: kept context {} unused for {}: dropping it", id,
                         format_seconds(st.context->options.context_ttl));
            drop_context(self, id);
            drain_queue(self);
          }
          return;
        }
        auto it = std::find_if(st.queue.begin(), st.queue.end(), [id](const Queued& q) { return q.id == id; });
        if (it == st.queue.end()) return;  // placed meanwhile
        const bool head = it == st.queue.begin();
        st.context->metrics->queue_wait_seconds.observe(seconds_since(it->since));
        // At its deadline a request that fits (behind a head that does not) is placed, not refused.
        auto p = try_place(self, id, it->ask, it->context_id);
        if (p)
          it->promise.deliver(std::move(*p));
        else
          it->promise.deliver(mesh_error("no KV capacity freed up for this request within " +
                                         format_seconds(st.context->options.queue_timeout) + " in the queue (" +
                                         std::to_string(std::distance(st.queue.begin(), it)) +
                                         " requests ahead of it): " + p.error().message));
        const bool failed = !p;
        st.queue.erase(it);
        if (failed) detach(self, id);  // a question that gave up no longer holds its context
        if (head) drain_queue(self);
        st.context->metrics->queued.set(double(st.queue.size()));
        publish_members(*st.members, *st.context->metrics);
      },
      [=](release_atom, uint64_t id) {
        auto& st = self->state;
        st.members->release(id);
        st.drivers->erase(id);
        st.placements.erase(id);
        detach(self, id);
        drain_queue(self);
      },
      [=](keep_atom, uint64_t id) -> bool {  // the request ends; its shards become kept context `id`
        auto& st = self->state;
        st.drivers->erase(id);
        auto p = st.placements.find(id);
        st.members->release(id);
        bool kept = false;
        if (p != st.placements.end()) {
          std::vector<std::pair<uint32_t, int64_t>> shards;
          for (const PlacedHost& h : p->second.hosts) shards.emplace_back(h.worker_id, h.end - h.begin);
          if (st.members->reserve_exact(context_key(id), shards)) {  // fits: more was just freed
            st.kept[id] = Kept{std::move(p->second), 0, false, self->clock().now()};
            kept = true;
            arm_context_ttl(self, id);
          }
          st.placements.erase(p);
        }
        st.context->metrics->kept_contexts.set(double(st.kept.size()));
        drain_queue(self);
        return kept;
      },
      [=](attach_atom, uint64_t id, uint64_t context_id, int64_t local_tokens) -> caf::result<Placement> {
        auto& st = self->state;
        auto k = st.kept.find(context_id);
        if (k == st.kept.end() || k->second.drop_when_idle) return mesh_error(not_kept(context_id));
        ++k->second.in_use;  // a user from now on, placed or waiting: nothing drops it meanwhile
        st.attached[id] = context_id;
        PlacementAsk ask;
        ask.local_tokens = local_tokens;
        bool refused = false;
        auto r = admit(self, id, ask, context_id, refused);
        if (refused) detach(self, id);
        return r;
      },
      [=](drop_atom, uint64_t context_id) {
        auto& st = self->state;
        auto k = st.kept.find(context_id);
        if (k == st.kept.end()) return;
        if (k->second.in_use > 0) k->second.drop_when_idle = true;
        else drop_context(self, context_id);
        drain_queue(self);
      },
      [=](members_atom) -> std::vector<WorkerView> { return self->state.members->view(); },
      [=](leave_atom, WorkerActor& worker) -> bool {
        auto& st = self->state;
        auto w = st.members->drain(worker.address());
        if (!w) return false;
        spdlog::info("router: {} is leaving: it finishes its requests and gets no new ones",
                     worker_name(w->id, w->info.endpoint));
        // Its kept contexts go with it (now, or when the requests asking them end).
        std::vector<uint64_t> on_it;
        for (const auto& [cid, k] : st.kept)
          for (const PlacedHost& h : k.placement.hosts)
            if (h.worker_id == w->id) on_it.push_back(cid);
        for (uint64_t cid : on_it) {
          Kept& k = st.kept[cid];
          if (k.in_use > 0) k.drop_when_idle = true;
          else drop_context(self, cid);
        }
        drain_queue(self);  // queued requests that needed it may no longer fit
        return true;
      },
  };
}

}  // namespace

RouterActor spawn_router(caf::actor_system& sys, std::shared_ptr<const RouterContext> context) {
  return sys.spawn(router, std::move(context));
}

}  // namespace starmesh
