#include "starmesh/runtime/worker_job.hpp"

#include <algorithm>

#include "starmesh/runtime/membership.hpp"

namespace starmesh {

Expected<std::shared_ptr<Job>> make_job(EncodeOrder& o, int64_t vocab_size) {
  const std::string req = "request " + std::to_string(o.request_id);
  auto bad = [&](auto&&... parts) { return make_error(ErrorCode::invalid_argument, req, ": ", parts...); };
  SM_ASSIGN(plan, plan_blocks(o.plan.context_tokens, o.plan.block_size, o.plan.anchor_size, o.plan.hosts));
  if (int(plan.hosts.size()) != o.plan.hosts)
    return bad("the plan has ", plan.hosts.size(), " hosts, the order says ", o.plan.hosts);
  if (o.host < 0 || o.host >= o.plan.hosts)
    return bad("host ", o.host, " is not in a plan of ", o.plan.hosts, " hosts");
  if (o.group.size() != size_t(o.plan.hosts)) return bad(o.group.size(), " group members for ", o.plan.hosts, " hosts");
  if (o.data_plane_key.size() != kMessageKeyBytes)
    return bad("the data-plane key has ", o.data_plane_key.size(), " bytes, not ", kMessageKeyBytes);
  const HostRange& r = plan.hosts[size_t(o.host)];
  const bool reuse = o.reuse_context != 0;  // a kept context's shard: no ids travel
  std::vector<int32_t> shard_ids = unpack_ids(o.shard_ids), anchor_ids = unpack_ids(o.anchor_ids);
  if (!reuse && int64_t(shard_ids.size()) != r.end - r.begin)
    return bad("host ", o.host, " holds context tokens [", r.begin, ", ", r.end, ") but the order carries ",
               shard_ids.size());
  if (!reuse && host_needs_anchor(plan, o.host) && int64_t(anchor_ids.size()) != plan.anchor_size)
    return bad("the anchor has ", plan.anchor_size, " tokens, the order carries ", anchor_ids.size());
  for (const auto* ids : {&shard_ids, &anchor_ids})
    for (int32_t id : *ids)
      if (id < 0 || id >= vocab_size) return bad("token id ", id, " is outside the vocabulary of ", vocab_size);
  auto job = std::make_shared<Job>();
  job->id = o.request_id;
  job->host = o.host;
  job->query_host = o.host == o.plan.hosts - 1;
  job->plan = std::move(plan);
  if (!reuse) {  // the whole context's length, with only what this host reads filled in
    job->context.assign(size_t(o.plan.context_tokens), 0);
    std::copy(anchor_ids.begin(), anchor_ids.end(), job->context.begin());
    std::copy(shard_ids.begin(), shard_ids.end(), job->context.begin() + r.begin);
  }
  job->keep = o.keep;
  job->tenant_tag = o.tenant_tag;
  job->priority = int(o.priority) <= int(Priority::high) ? o.priority : Priority::normal;  // a peer's byte
  job->local_capacity = job->query_host ? o.local_capacity : 0;
  job->step_timeout = std::chrono::milliseconds(std::max<int64_t>(1, o.step_timeout_ms));
  for (const GroupMember& m : o.group) {
    job->host_names.push_back(worker_name(m.worker_id, m.endpoint));
    job->addresses.push_back(m.address);
  }
  std::copy(o.data_plane_key.begin(), o.data_plane_key.end(), job->data_plane_key.begin());
  job->driver = o.driver;
  return job;
}

void run_job(std::shared_ptr<WorkerEngine> engine, std::shared_ptr<Job> job, data_plane_i* plane,
             ShardServerOptions serve, WorkerActor worker) {
  const Transformer& model = engine->model;
  auto transport = plane->join(job->id, job->host, job->addresses, job->data_plane_key);
  if (!transport) {
    job->phase1 = make_error(ErrorCode::unavailable, "could not join the data plane of request ", job->id, ": ",
                             transport.error().message);
    caf::anon_send(worker, encoded_atom::value, job->id);
    caf::anon_send(worker, served_atom::value, job->id);
    return;
  }
  job->transport = std::move(*transport);
  // A freed request (its driver gave up, or planned it again elsewhere) stops waiting on the
  // network at once instead of sitting out a step timeout on a peer that died.
  job->transport->cancel_on(&job->stop);
  if (job->shard) {  // a kept context's shard: nothing to encode
    job->shard_tokens = job->shard->end - job->shard->begin;
  } else {
    const auto t0 = std::chrono::steady_clock::now();
    ArbiterLock compute(engine->arbiter, WorkKind::phase1, job->id, job->tenant_tag, job->priority);
    EncodeControl control{&compute, &job->stop, {}, engine->prefill_chunk};
    control.on_block = [job](int64_t done, int64_t) {  // the client's progress, through the driver
      caf::anon_send(job->driver, progress_atom::value, job->id, int32_t(job->host), done);
    };
    auto s = encode_host(model, job->plan, job->host, job->context, control);
    if (s) {  // the time ends when the device's work does, not when it was queued
      std::lock_guard lock(compute);
      if (Status synced = model.backend().synchronize(); !synced) s = synced.error();
    }
    if (s) {
      job->shard_tokens = s->end - s->begin;
      job->shard = std::make_shared<const KvShard>(std::move(*s));
    } else {
      job->phase1 = s.status();
    }
    job->phase1_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    job->context = {};
  }
  caf::anon_send(worker, encoded_atom::value, job->id);
  if (job->phase1 && !job->query_host) {
    serve.step_timeout = job->step_timeout;
    const KvCache& cache = job->shard->cache;
    Expected<ShardServerStats> served = ShardServerStats{};
    if (job->transport->carries_device_memory()) {  // each partial alone, kept on the device
      ArbiterLock compute(engine->arbiter, WorkKind::shard_step, job->id, job->tenant_tag, job->priority);
      served = serve_shard(model, cache, *job->transport, compute, job->stop, serve);
    } else {  // batched with the other requests' partials, through the host
      const ShardPartialFn batched = [&](int layer, const Tensor& q) {
        return engine->shards.partial(model, cache, layer, q, job->id);
      };
      served = serve_shard(model, *job->transport, batched, job->stop, serve);
    }
    if (!served) job->served = served.status();
    if (!job->keep) job->shard.reset();  // the KV goes as soon as phase 2 is over (unless it may be kept)
  }
  caf::anon_send(worker, served_atom::value, job->id);
}

}  // namespace starmesh
