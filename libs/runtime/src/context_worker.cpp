#include "starmesh/runtime/context_worker.hpp"

#include <spdlog/spdlog.h>

#include "starmesh/runtime/jobs_book.hpp"
#include "starmesh/runtime/query_coordinator.hpp"
#include "starmesh/runtime/worker_job.hpp"

namespace starmesh {
namespace {

struct WorkerState {
  static inline const char* name = "context_worker";
  std::shared_ptr<WorkerSetup> setup;
  std::shared_ptr<WorkerEngine> engine;
  std::unique_ptr<JobsBook> book;
  std::map<uint64_t, caf::typed_response_promise<EncodeReport>> pending;  // phase 1 running
  // What status answers, made once: asking the data plane for its address takes the lock a
  // join holds while it waits for a peer, and a liveness probe must not wait for that.
  WorkerInfo info;

  ~WorkerState() {
    if (!book) return;
    for (auto& [id, job] : book->all()) job->stop = true;
    for (auto& [id, job] : book->all())
      if (job->thread.joinable()) job->thread.join();
  }
};

using WorkerPtr = WorkerActor::stateful_pointer<WorkerState>;

// The KV gauges, after every reservation or release.
void publish_pool(const WorkerState& st) {
  if (!st.setup->metrics) return;
  st.setup->metrics->kv_reserved.set(double(st.book->pool().used()));
  st.setup->metrics->requests.set(double(st.book->pool().requests()));
  // The memory behind it: pages mapped now (they follow the bookings as caches are made and go).
  if (const auto& arena = st.setup->model->kv_paging().arena) {
    st.setup->metrics->kv_pages_total.set(double(arena->pages()));
    st.setup->metrics->kv_pages_used.set(double(arena->pages() - arena->free_pages()));
  }
}

void count_refusal(const WorkerState& st) {
  if (st.setup->metrics) st.setup->metrics->refused.inc();
}

// Ends a job: its KV goes back to the pool now; its thread and coordinator stop soon.
void retire(WorkerPtr self, uint64_t id) {
  auto job = self->state.book->retire(id);
  if (!job) return;
  publish_pool(self->state);
  if (job->coordinator) self->send(job->coordinator, cancel_atom::value, id);
}

caf::result<EncodeReport> start_encode(WorkerPtr self, EncodeOrder& o) {
  auto& st = self->state;
  const WorkerSetup& setup = *st.setup;
  auto made = make_job(o, setup.model->config().vocab_size);
  if (!made) return mesh_error(made.error());
  std::shared_ptr<Job> job = std::move(*made);
  if (Status s = st.book->admit(job, o.reuse_context); !s) {
    if (s.code() == ErrorCode::overloaded) count_refusal(st);
    return mesh_error(s.error());
  }
  publish_pool(st);
  if (job->driver) self->monitor(job->driver);
  auto promise = self->make_response_promise<EncodeReport>();
  st.pending[job->id] = promise;
  ShardServerOptions serve = setup.shard_server;
  if (setup.metrics) serve.on_partial = [m = setup.metrics](double s) { m->shard_partial_seconds.observe(s); };
  job->thread = std::thread(run_job, st.engine, job, setup.data_plane, std::move(serve), WorkerActor{self});
  return promise;
}

// Phase 1 of a job ended (its thread posted `encoded`): answer the driver's encode order.
void encoded(WorkerPtr self, uint64_t id) {
  auto& st = self->state;
  auto p = st.pending.find(id);
  if (p == st.pending.end()) return;
  auto promise = p->second;
  st.pending.erase(p);
  auto job = st.book->live(id);
  if (!job) {
    promise.deliver(mesh_error(ErrorCode::cancelled, "request " + std::to_string(id) + " was freed during phase 1"));
    return;
  }
  WorkerMetrics* m = st.setup->metrics.get();
  if (!job->phase1) {
    if (m) m->phase1_failed.inc();
    promise.deliver(mesh_error(with_prefix("phase 1 failed: ", job->phase1.error())));
    retire(self, id);
    return;
  }
  job->encoded = true;
  if (m) {
    m->encoded.inc();
    m->encoded_tokens.inc(double(job->shard_tokens));
    m->phase1_seconds.observe(job->phase1_seconds);
  }
  promise.deliver(EncodeReport{id, int32_t(job->host), job->shard_tokens, job->phase1_seconds, st.book->pool().free()});
}

// The query host starts the request's coordinator on its own shard.
caf::result<CoordinatorActor> start_phase2(WorkerPtr self, Phase2Order& o) {
  auto& st = self->state;
  const std::string req = "request " + std::to_string(o.request_id);
  auto job = st.book->live(o.request_id);
  if (!job) return mesh_error(ErrorCode::not_found, req + " is not on this worker");
  if (!job->query_host) return mesh_error(ErrorCode::invalid_argument, req + ": this worker is not its query host");
  if (!job->encoded || !job->shard || job->phase2_started)
    return mesh_error(ErrorCode::invalid_argument, req + ": phase 1 has not finished here, or phase 2 already began");
  const int64_t local = int64_t(o.query.size()) + o.max_new_tokens;
  if (o.max_new_tokens < 0 || local > job->local_capacity)
    return mesh_error(ErrorCode::invalid_argument, req + ": " + std::to_string(local) +
                                                       " query and generated tokens exceed the " +
                                                       std::to_string(job->local_capacity) + " reserved for them");
  auto cs = std::make_shared<CoordinatorSetup>(CoordinatorSetup{
      st.engine, job->shard, job->plan.context_tokens, job->local_capacity, std::move(job->transport), job->host_names,
      std::move(o), job->step_timeout, std::shared_ptr<const std::atomic<bool>>(job, &job->stop), st.setup->metrics});
  cs->tenant_tag = job->tenant_tag;
  cs->priority = job->priority;
  job->phase2_started = true;
  if (!job->keep) job->shard.reset();  // the coordinator holds it (and a kept context, if any)
  job->coordinator = self->spawn<caf::linked>(query_coordinator, cs);
  return job->coordinator;
}

WorkerActor::behavior_type context_worker(WorkerPtr self, std::shared_ptr<WorkerSetup> setup) {
  auto& st = self->state;
  st.setup = setup;
  st.engine = std::make_shared<WorkerEngine>(*setup->model, setup->max_batch, setup->prefill_chunk,
                                             setup->batch_prefill_tokens);
  if (setup->metrics) {
    st.engine->batcher.on_batch([m = setup->metrics](const DecodeBatcher::Shape& b) {
      if (b.decode_steps > 0) m->decode_batch_size.observe(double(b.decode_steps));
      m->batched_prefills.inc(double(b.prefills));
      m->batched_prefill_tokens.inc(double(b.prefill_tokens));
    });
    st.engine->shards.on_batch([m = setup->metrics](size_t n) { m->shard_batch_size.observe(double(n)); });
  }
  st.book = std::make_unique<JobsBook>(setup->kv_capacity, setup->kv_page_tokens);
  st.info = describe_worker(*setup, setup->kv_capacity);
  self->set_down_handler([=](caf::down_msg& dm) {
    // A request's driver went away (its router died): nobody will free its jobs.
    for (auto& job : self->state.book->orphans_of(dm.source)) {
      spdlog::warn("{}: the driver of request {} went away; freeing its KV", setup->endpoint, job->id);
      retire(self, job->id);
    }
  });
  return {
      [=](encode_atom, EncodeOrder& o) { return start_encode(self, o); },
      [=](encoded_atom, uint64_t id) { encoded(self, id); },
      [=](served_atom, uint64_t id) {  // a job's thread ended
        auto job = self->state.book->find(id);
        if (!job) return;
        if (job->thread.joinable()) job->thread.join();
        if (!job->served && !job->freed) {
          spdlog::warn("{}: request {}: {}", setup->endpoint, id, job->served.message());
          if (job->driver)
            self->send(job->driver, failed_atom::value, id,
                       with_prefix("the shard loop failed: ", job->served.error()));
        }
        self->state.book->thread_ended(id);
        publish_pool(self->state);  // its caches (and their pages) went with it
      },
      [=](phase2_atom, Phase2Order& o) { return start_phase2(self, o); },
      [=](free_atom, uint64_t id) -> int64_t {
        retire(self, id);
        return self->state.book->pool().free();
      },
      [=](keep_atom, uint64_t id) -> caf::result<int64_t> {
        auto job = self->state.book->live(id);
        Status kept = self->state.book->keep(id);  // retires the request either way
        if (job && job->coordinator) self->send(job->coordinator, cancel_atom::value, id);
        publish_pool(self->state);
        if (!kept) return mesh_error(kept.error());
        return self->state.book->pool().free();
      },
      [=](drop_atom, uint64_t id) -> int64_t {  // id 0: every kept context (a new router knows none)
        self->state.book->drop(id);
        publish_pool(self->state);
        return self->state.book->pool().free();
      },
      [=](status_atom) -> WorkerInfo {
        WorkerInfo info = self->state.info;
        info.kv_free = self->state.book->pool().free();
        return info;
      },
  };
}

}  // namespace

WorkerInfo describe_worker(const WorkerSetup& setup, int64_t kv_free) {
  WorkerInfo info;
  info.endpoint = setup.endpoint;
  info.device = setup.device;
  info.kv_capacity = setup.kv_capacity;
  info.kv_page_tokens = setup.kv_page_tokens;
  info.kv_free = kv_free;
  info.model = model_signature(setup.model->config());
  info.data_plane = setup.data_plane->name();
  info.address = setup.data_plane->address();
  return info;
}

WorkerActor spawn_context_worker(caf::actor_system& sys, WorkerSetup setup) {
  return sys.spawn(context_worker, std::make_shared<WorkerSetup>(std::move(setup)));
}

}  // namespace starmesh
