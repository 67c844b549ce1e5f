#pragma once
// What removing one worker costs the mesh, in tokens of work lost or waited for: the router
// exports it per worker (starmesh_worker_removal_cost) so that a scale-down removes the
// cheapest worker first (docs/SCALING.md: Kubernetes' pod-deletion-cost annotation). A plain
// function, tested without actors (tests/runtime/test_removal_cost.cpp).
//
// The rule: cost = kept + reserved + per_request * running, where
// - kept: the context tokens of every kept context with a shard on the worker, whole: losing
//   one shard means encoding the whole context again (kept_context_policy.hpp);
// - reserved: the KV the worker's running requests hold (a drain waits for them, a loss makes
//   them encode again);
// - running: the requests with a shard or their query on it, each weighing `per_request`
//   tokens more, so that of two workers holding the same KV the busier costs more.
// A draining worker costs -1: it leaves anyway, remove it first. An idle worker costs 0.
#include <cstdint>

namespace starmesh {

struct WorkerLoad {
  int64_t kept_context_tokens = 0;  // whole contexts with a shard here
  int64_t reserved_tokens = 0;      // KV held by its running requests (not kept contexts)
  int64_t running_requests = 0;
  bool draining = false;
};

struct RemovalCostOptions {
  int64_t per_request = 1024;  // tokens a running request weighs beyond its KV
};

// The cost, saturating at INT32_MAX (pod-deletion-cost is an int32).
int64_t removal_cost(const WorkerLoad& w, const RemovalCostOptions& o = {});

}  // namespace starmesh
