#pragma once
// The context worker: owns one backend (a CPU slot or one GPU) through the model it is
// given, a KV pool with a capacity in tokens, and the shards of the requests placed on it.
// On `encode` it reserves KV (or refuses), runs phase 1 for its blocks on a thread of its
// own, and answers with an EncodeReport. A shard host then serves phase 2 on the data plane
// in a tight loop (serve_shard) until the coordinator is done; the query host instead spawns
// the request's query_coordinator on `phase2`. `free` ends a request and returns its KV.
// The worker watches each request's driver: a driver that goes away frees its requests.
// The rules (reservations, job table, kept shards, retirement) live in JobsBook
// (jobs_book.hpp); the job's thread in worker_job.hpp; this actor only translates messages.
#include <memory>
#include <string>

#include "starmesh/model/transformer.hpp"
#include "starmesh/runtime/data_plane.hpp"
#include "starmesh/runtime/mesh_metrics.hpp"
#include "starmesh/runtime/messages.hpp"
#include "starmesh/runtime/shard_server.hpp"

namespace starmesh {

struct WorkerSetup {
  const Transformer* model = nullptr;  // outlives the worker (main owns it)
  data_plane_i* data_plane = nullptr;  // outlives the worker
  std::string endpoint;                // "127.0.0.1:PORT": names this worker in messages
  std::string device = "cpu";
  int64_t kv_capacity = 0;                 // tokens
  int64_t kv_page_tokens = 0;              // booked in whole pages of this many (page_kv; 0: tokens)
  ShardServerOptions shard_server;         // spin and nap of idle shard loops (step_timeout comes per request)
  std::shared_ptr<WorkerMetrics> metrics;  // null: none kept (the worker command always makes them)
  int max_batch = 32;                      // decode steps per batch, [1, DecodeBatcher::kMaxBatch]
  int64_t prefill_chunk = 4096;            // phase-1 tokens per hold of the device (0: whole blocks)
  int64_t batch_prefill_tokens = 256;      // a query this short prefills in a decode batch (0: alone)
};

// Spawns a worker. Its actor and threads use setup.model and setup.data_plane until it has
// terminated (await it before destroying them).
WorkerActor spawn_context_worker(caf::actor_system& sys, WorkerSetup setup);

// What the worker tells the router about itself (status reply, registration).
WorkerInfo describe_worker(const WorkerSetup& setup, int64_t kv_free);

}  // namespace starmesh
