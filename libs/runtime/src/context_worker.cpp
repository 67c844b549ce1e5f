#include "starmesh/runtime/context_worker.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <map>
#include <optional>
#include <thread>

#include "starmesh/attention/phase1.hpp"
#include "starmesh/runtime/kv_pool.hpp"
#include "starmesh/runtime/membership.hpp"
#include "starmesh/runtime/query_coordinator.hpp"

namespace starmesh {
namespace {

using Clock = std::chrono::steady_clock;

// One request on this worker. The compute thread writes the phase-1 results before it posts
// `encoded`; the actor reads them after (the message is the synchronization).
struct Job {
  uint64_t id = 0;
  int host = 0;
  bool query_host = false;
  BlockPlan plan;
  std::vector<int32_t> context;  // anchor and own blocks filled in; dropped after phase 1
  int64_t local_capacity = 0;
  std::chrono::milliseconds step_timeout{60000};
  std::vector<std::string> host_names;  // per rank, for messages
  RequestActor driver;
  std::unique_ptr<transport_i> transport;
  std::atomic<bool> stop{false};
  std::thread thread;

  // Written by the thread.
  std::shared_ptr<const KvShard> shard;  // the query host's, kept for its coordinator (and kept contexts)
  std::string error;             // phase 1 failed
  std::string serve_error;       // the shard loop failed
  double phase1_seconds = 0;
  int64_t shard_tokens = 0;

  // Actor side.
  bool encoded = false;
  bool freed = false;
  bool keep = false;            // the driver may turn the shard into a kept context (keep)
  bool phase2_started = false;
  CoordinatorActor coordinator;
};

struct WorkerState {
  static inline const char* name = "context_worker";
  std::shared_ptr<WorkerSetup> setup;
  std::shared_ptr<WorkerEngine> engine;
  std::unique_ptr<KvPool> pool;
  std::map<uint64_t, std::shared_ptr<Job>> jobs;
  std::map<uint64_t, caf::typed_response_promise<EncodeReport>> pending;
  // Kept contexts: their shards, read by the requests that attach to them (KV booked in the
  // pool under context_key(id)).
  std::map<uint64_t, std::shared_ptr<const KvShard>> contexts;

  ~WorkerState() {
    for (auto& [id, job] : jobs) job->stop = true;
    for (auto& [id, job] : jobs)
      if (job->thread.joinable()) job->thread.join();
  }
};

using WorkerPtr = WorkerActor::stateful_pointer<WorkerState>;

// Phase 1 of the job's host, one block at a time: the compute lock is taken per block, so
// the phase-2 steps of other requests on this worker interleave with a long phase 1, and a
// freed request stops between blocks. Each block is encoded as a one-block host of the same
// plan (same anchor, same positions) and its KV appended to the shard.
Expected<KvShard> encode_by_block(WorkerEngine& engine, Job& job) {
  const Transformer& model = engine.model;
  const HostRange range = job.plan.hosts[size_t(job.host)];
  std::optional<KvCache> anchor;
  if (host_needs_anchor(job.plan, job.host)) {
    std::lock_guard lock(engine.compute);
    SM_ASSIGN(a, encode_anchor(model, job.plan, job.context));
    anchor = std::move(a);
  }
  SM_ASSIGN(cache, model.make_cache(range.end - range.begin));
  KvShard shard{range.begin, range.end, std::move(cache)};
  for (int b = range.first_block; b < range.end_block; ++b) {
    if (job.stop.load()) return make_error("freed during phase 1");
    BlockPlan one = job.plan;
    const Block& blk = job.plan.blocks[size_t(b)];
    one.hosts[size_t(job.host)] = HostRange{b, b + 1, blk.begin, blk.end};
    std::lock_guard lock(engine.compute);
    SM_ASSIGN(part, encode_shard(model, one, job.host, job.context, anchor ? &*anchor : nullptr));
    for (int l = 0; l < model.layers(); ++l) SM_TRY(shard.cache.write(l, part.cache.keys(l), part.cache.values(l)));
    SM_TRY(shard.cache.commit(blk.end - blk.begin));
  }
  return shard;
}

// Phase 1, then (shard hosts) phase 2 serving, on the job's thread.
void run_job(std::shared_ptr<WorkerEngine> engine, std::shared_ptr<Job> job, ShardServerOptions serve,
             WorkerActor self) {
  const Transformer& model = engine->model;
  if (job->shard) {  // a kept context's shard: nothing to encode
    job->shard_tokens = job->shard->end - job->shard->begin;
  } else {
    const auto t0 = Clock::now();
    auto s = encode_by_block(*engine, *job);
    if (s) {
      job->shard_tokens = s->end - s->begin;
      job->shard = std::make_shared<const KvShard>(std::move(*s));
    } else {
      job->error = s.error().message;
    }
    job->phase1_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    job->context = {};
  }
  caf::anon_send(self, encoded_atom::value, job->id);
  if (job->error.empty() && !job->query_host) {
    serve.step_timeout = job->step_timeout;
    auto served = serve_shard(model, job->shard->cache, *job->transport, engine->compute, job->stop, serve);
    if (!served) job->serve_error = served.error().message;
    if (!job->keep) job->shard.reset();  // the KV goes as soon as phase 2 is over (unless it may be kept)
  }
  caf::anon_send(self, served_atom::value, job->id);
}

// Checks an order against this worker and builds its job (without starting it).
Expected<std::shared_ptr<Job>> make_job(const WorkerSetup& setup, EncodeOrder& o) {
  SM_ASSIGN(plan, plan_blocks(o.plan.context_tokens, o.plan.block_size, o.plan.anchor_size, o.plan.hosts));
  if (int(plan.hosts.size()) != o.plan.hosts)
    return make_error("the plan of request ", o.request_id, " has ", plan.hosts.size(), " hosts, the order says ",
                      o.plan.hosts);
  if (o.host < 0 || o.host >= o.plan.hosts)
    return make_error("request ", o.request_id, ": host ", o.host, " is not in a plan of ", o.plan.hosts, " hosts");
  if (o.group.size() != size_t(o.plan.hosts))
    return make_error("request ", o.request_id, ": ", o.group.size(), " group members for ", o.plan.hosts, " hosts");
  const HostRange& r = plan.hosts[size_t(o.host)];
  auto shard_ids = unpack_ids(o.shard_ids);
  const bool reuse = o.reuse_context != 0;  // a kept context's shard: no ids travel
  if (!reuse && int64_t(shard_ids.size()) != r.end - r.begin)
    return make_error("request ", o.request_id, ": host ", o.host, " holds context tokens [", r.begin, ", ", r.end,
                      ") but the order carries ", shard_ids.size());
  auto anchor_ids = unpack_ids(o.anchor_ids);
  if (!reuse && host_needs_anchor(plan, o.host) && int64_t(anchor_ids.size()) != plan.anchor_size)
    return make_error("request ", o.request_id, ": the anchor has ", plan.anchor_size, " tokens, the order carries ",
                      anchor_ids.size());
  const int64_t vocab = setup.model->config().vocab_size;
  for (int32_t id : shard_ids)
    if (id < 0 || id >= vocab) return make_error("request ", o.request_id, ": token id ", id, " is outside the vocabulary of ", vocab);
  auto job = std::make_shared<Job>();
  job->id = o.request_id;
  job->host = o.host;
  job->query_host = o.host == o.plan.hosts - 1;
  job->plan = std::move(plan);
  // The whole context's length, with only what this host reads filled in.
  if (!reuse) {
    job->context.assign(size_t(o.plan.context_tokens), 0);
    std::copy(anchor_ids.begin(), anchor_ids.end(), job->context.begin());
    std::copy(shard_ids.begin(), shard_ids.end(), job->context.begin() + r.begin);
  }
  job->keep = o.keep;
  job->local_capacity = job->query_host ? o.local_capacity : 0;
  job->step_timeout = std::chrono::milliseconds(std::max<int64_t>(1, o.step_timeout_ms));
  for (const GroupMember& m : o.group) job->host_names.push_back(worker_name(m.worker_id, m.endpoint));
  job->driver = o.driver;
  return job;
}

// The KV gauges, after every reservation or release.
void publish_pool(const WorkerState& st) {
  if (!st.setup->metrics) return;
  st.setup->metrics->kv_reserved.set(double(st.pool->used()));
  st.setup->metrics->requests.set(double(st.pool->requests()));
}

// Ends a job: its KV goes back to the pool now; its thread and coordinator stop soon.
void retire(WorkerPtr self, const std::shared_ptr<Job>& job) {
  if (job->freed) return;
  job->freed = true;
  job->stop = true;
  self->state.pool->release(job->id);
  publish_pool(self->state);
  if (job->coordinator) self->send(job->coordinator, cancel_atom::value, job->id);
  if (!job->thread.joinable()) self->state.jobs.erase(job->id);
  // else: erased when the thread posts `served`
}

WorkerActor::behavior_type context_worker(WorkerPtr self, std::shared_ptr<WorkerSetup> setup) {
  self->state.setup = setup;
  self->state.engine = std::make_shared<WorkerEngine>(*setup->model);
  self->state.pool = std::make_unique<KvPool>(setup->kv_capacity);
  self->set_down_handler([=](caf::down_msg& dm) {
    // A request's driver went away (its router died): nobody will free its jobs.
    std::vector<std::shared_ptr<Job>> orphans;
    for (auto& [id, job] : self->state.jobs)
      if (!job->freed && job->driver && job->driver.address() == dm.source) orphans.push_back(job);
    for (auto& job : orphans) {
      spdlog::warn("{}: the driver of request {} went away; freeing its KV", setup->endpoint, job->id);
      retire(self, job);
    }
  });
  return {
    [=](encode_atom, EncodeOrder& o) -> caf::result<EncodeReport> {
      auto& st = self->state;
      if (st.jobs.count(o.request_id)) return mesh_error("request " + std::to_string(o.request_id) + " is already here");
      std::shared_ptr<const KvShard> kept;
      if (o.reuse_context != 0) {
        auto c = st.contexts.find(o.reuse_context);
        if (c == st.contexts.end())
          return mesh_error("context " + std::to_string(o.reuse_context) +
                            " is not kept on this worker any more (dropped to make room, or never kept here)");
        kept = c->second;
      }
      auto made = make_job(*setup, o);
      if (!made) return mesh_error(made.error().message);
      std::shared_ptr<Job> job = std::move(*made);
      const HostRange& r = job->plan.hosts[size_t(job->host)];
      if (kept && (kept->begin != r.begin || kept->end != r.end))
        return mesh_error("context " + std::to_string(o.reuse_context) + " holds tokens [" + std::to_string(kept->begin) +
                          ", " + std::to_string(kept->end) + ") here, the order asks for another range");
      job->shard = kept;  // null: phase 1 makes it
      const int64_t need = (kept ? 0 : r.end - r.begin) + job->local_capacity;
      if (Status s = st.pool->reserve(job->id, need); !s) {
        if (setup->metrics) setup->metrics->refused.inc();
        return mesh_error("refused: " + s.message() + " (start the worker with a larger --capacity, or add workers)");
      }
      std::vector<std::vector<uint8_t>> addresses;
      for (const GroupMember& m : o.group) addresses.push_back(m.address);
      auto transport = setup->data_plane->join(job->id, job->host, addresses);
      if (!transport) {
        st.pool->release(job->id);
        if (setup->metrics) setup->metrics->refused.inc();
        return mesh_error("could not join the data plane of request " + std::to_string(job->id) + ": " +
                          transport.error().message);
      }
      job->transport = std::move(*transport);
      publish_pool(st);
      if (job->driver) self->monitor(job->driver);
      st.jobs[job->id] = job;
      auto promise = self->make_response_promise<EncodeReport>();
      st.pending[job->id] = promise;
      WorkerActor me = self;
      job->thread = std::thread(run_job, st.engine, job, setup->shard_server, me);
      return promise;
    },
    [=](encoded_atom, uint64_t id) {
      auto& st = self->state;
      auto p = st.pending.find(id);
      auto j = st.jobs.find(id);
      if (p == st.pending.end()) return;
      auto promise = p->second;
      st.pending.erase(p);
      if (j == st.jobs.end() || j->second->freed) {
        promise.deliver(mesh_error("request " + std::to_string(id) + " was freed during phase 1"));
        return;
      }
      Job& job = *j->second;
      if (!job.error.empty()) {
        if (setup->metrics) setup->metrics->phase1_failed.inc();
        promise.deliver(mesh_error("phase 1 failed: " + job.error));
        retire(self, j->second);
        return;
      }
      job.encoded = true;
      if (setup->metrics) {
        setup->metrics->encoded.inc();
        setup->metrics->encoded_tokens.inc(double(job.shard_tokens));
        setup->metrics->phase1_seconds.observe(job.phase1_seconds);
      }
      promise.deliver(EncodeReport{id, int32_t(job.host), job.shard_tokens, job.phase1_seconds, st.pool->free()});
    },
    [=](served_atom, uint64_t id) {
      auto& st = self->state;
      auto j = st.jobs.find(id);
      if (j == st.jobs.end()) return;
      std::shared_ptr<Job> job = j->second;
      if (job->thread.joinable()) job->thread.join();
      if (!job->serve_error.empty() && !job->freed) {
        spdlog::warn("{}: request {}: {}", setup->endpoint, id, job->serve_error);
        if (job->driver) self->send(job->driver, failed_atom::value, id, "the shard loop failed: " + job->serve_error);
      }
      if (job->freed) st.jobs.erase(j);
    },
    [=](phase2_atom, Phase2Order& o) -> caf::result<CoordinatorActor> {
      auto& st = self->state;
      auto j = st.jobs.find(o.request_id);
      const std::string req = "request " + std::to_string(o.request_id);
      if (j == st.jobs.end() || j->second->freed) return mesh_error(req + " is not on this worker");
      Job& job = *j->second;
      if (!job.query_host) return mesh_error(req + ": this worker is not its query host");
      if (!job.encoded || !job.shard || job.phase2_started)
        return mesh_error(req + ": phase 1 has not finished here, or phase 2 already began");
      const int64_t local = int64_t(o.query.size()) + o.max_new_tokens;
      if (local > job.local_capacity)
        return mesh_error(req + ": " + std::to_string(local) + " query and generated tokens exceed the " +
                          std::to_string(job.local_capacity) + " reserved for them");
      auto cs = std::make_shared<CoordinatorSetup>(CoordinatorSetup{st.engine, job.shard, job.plan.context_tokens,
                                                                    job.local_capacity, std::move(job.transport),
                                                                    job.host_names, std::move(o), job.step_timeout,
                                                                    std::shared_ptr<const std::atomic<bool>>(j->second, &job.stop)});
      job.phase2_started = true;
      if (!job.keep) job.shard.reset();  // the coordinator holds it (and a kept context, if any)
      job.coordinator = self->spawn<caf::linked>(query_coordinator, cs);
      return job.coordinator;
    },
    [=](free_atom, uint64_t id) -> int64_t {
      auto j = self->state.jobs.find(id);
      if (j != self->state.jobs.end()) retire(self, j->second);
      return self->state.pool->free();
    },
    [=](keep_atom, uint64_t id) -> caf::result<int64_t> {
      auto& st = self->state;
      auto j = st.jobs.find(id);
      if (j == st.jobs.end() || j->second->freed)
        return mesh_error("request " + std::to_string(id) + " is not on this worker: nothing to keep");
      std::shared_ptr<Job> job = j->second;
      if (!job->keep || !job->shard) {
        retire(self, job);
        return mesh_error("request " + std::to_string(id) + " has no shard to keep here");
      }
      const int64_t tokens = job->shard->end - job->shard->begin;
      st.contexts[id] = job->shard;
      retire(self, job);  // the request's KV goes; the context's is booked below (it fits: more was just freed)
      if (Status s = st.pool->reserve(context_key(id), tokens); !s) {
        st.contexts.erase(id);
        return mesh_error("keeping context " + std::to_string(id) + ": " + s.message());
      }
      publish_pool(st);
      return st.pool->free();
    },
    [=](drop_atom, uint64_t id) -> int64_t {  // id 0: every kept context (a new router knows none)
      auto& st = self->state;
      for (auto it = st.contexts.begin(); it != st.contexts.end();) {
        if (id != 0 && it->first != id) {
          ++it;
          continue;
        }
        st.pool->release(context_key(it->first));
        it = st.contexts.erase(it);
      }
      publish_pool(st);
      return st.pool->free();
    },
    [=](status_atom) -> WorkerInfo { return describe_worker(*setup, self->state.pool->free()); },
  };
}

}  // namespace

std::string model_signature(const LlamaConfig& c) {
  return "llama layers=" + std::to_string(c.num_hidden_layers) + " hidden=" + std::to_string(c.hidden_size) +
         " ffn=" + std::to_string(c.intermediate_size) + " heads=" + std::to_string(c.num_attention_heads) + "/" +
         std::to_string(c.num_key_value_heads) + " head_dim=" + std::to_string(c.head_dim) +
         " vocab=" + std::to_string(c.vocab_size);
}

WorkerInfo describe_worker(const WorkerSetup& setup, int64_t kv_free) {
  WorkerInfo info;
  info.endpoint = setup.endpoint;
  info.device = setup.device;
  info.kv_capacity = setup.kv_capacity;
  info.kv_free = kv_free;
  info.model = model_signature(setup.model->config());
  info.data_plane = setup.data_plane->name();
  info.address = setup.data_plane->address();
  return info;
}

WorkerActor spawn_context_worker(caf::actor_system& sys, WorkerSetup setup) {
  return sys.spawn(context_worker, std::make_shared<WorkerSetup>(std::move(setup)));
}

Expected<uint32_t> register_worker(caf::actor_system& sys, const RouterActor& router, const WorkerActor& worker,
                                   std::chrono::milliseconds timeout, const std::string& endpoint) {
  caf::scoped_actor self{sys};
  std::optional<WorkerInfo> info;
  std::string error;
  self->request(worker, timeout, status_atom::value)
      .receive([&](WorkerInfo& i) { info = std::move(i); }, [&](caf::error& e) { error = describe(e); });
  if (!info) return make_error("the worker did not describe itself: ", error);
  if (!endpoint.empty()) info->endpoint = endpoint;
  std::optional<uint32_t> id;
  self->request(router, timeout, register_atom::value, worker, *info)
      .receive([&](uint32_t i) { id = i; }, [&](caf::error& e) { error = describe(e); });
  if (!id) {
    if (error == "the request timed out")
      error = "the router did not answer within " + format_seconds(timeout);
    return make_error("registration refused: ", error);
  }
  return *id;
}

}  // namespace starmesh
