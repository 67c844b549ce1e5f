#pragma once
// The query coordinator of one request, spawned by the context worker that holds the last
// block (the query host). It builds a QueryHost from the worker's own shard, gathers the
// other hosts' partials through RemoteShards (the data plane), and runs generate_with on a
// thread of its own; the actor streams each token to the request's driver as it is sampled
// (TokenBatch), then a Phase2Report or the error, and ends. `cancel` stops generation after
// the current token.
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "starmesh/attention/phase1.hpp"
#include "starmesh/comm/transport.hpp"
#include "starmesh/runtime/messages.hpp"

namespace starmesh {

struct WorkerEngine;
struct WorkerMetrics;

struct CoordinatorSetup {
  std::shared_ptr<WorkerEngine> engine;
  std::shared_ptr<const KvShard> shard;  // the query host's own blocks (kept contexts share it)
  int64_t context_tokens = 0;
  int64_t local_capacity = 0;              // query + generated tokens
  std::unique_ptr<transport_i> transport;  // the request's group; this host is the last rank
  std::vector<std::string> host_names;     // per rank, for messages
  Phase2Order order;
  std::chrono::milliseconds step_timeout{60000};
  // Set when the worker frees the request (the driver ended it, or went away): a step
  // blocked on a silent shard host stops waiting at once instead of at the step timeout,
  // so the shard's memory and the thread are let go. Null: only the timeout.
  std::shared_ptr<const std::atomic<bool>> freed;
  std::shared_ptr<WorkerMetrics> metrics;  // the phase-2 exchanges' (null: none kept)
  uint64_t tenant_tag = 0;                 // the query's prefill takes its tenant's turns,
  Priority priority = Priority::normal;    // at the request's priority among them
};

// The actor's state: the generation thread and what it shares with the actor.
struct CoordinatorChannel;
struct CoordinatorState {
  static inline const char* name = "query_coordinator";
  std::shared_ptr<CoordinatorSetup> setup;
  std::shared_ptr<CoordinatorChannel> channel;
  std::thread thread;
  ~CoordinatorState();  // cancels and joins the thread
};

CoordinatorActor::behavior_type query_coordinator(CoordinatorActor::stateful_pointer<CoordinatorState> self,
                                                  std::shared_ptr<CoordinatorSetup> setup);

}  // namespace starmesh
