#pragma once
// The router: workers register with it (address, device, KV capacity) and are monitored;
// a generate order gets a request id and a request driver (request_driver.hpp), which
// tokenizes, asks the router to place the blocks (Membership::place reserves KV on workers
// with free capacity; a request that must wait for KV queues, one that can never fit is
// refused with the numbers), runs phase 1 everywhere, phase 2 on the query host, streams
// the tokens to the client's sink and frees the shards.
#include <chrono>
#include <memory>
#include <string>

#include "starmesh/model/llama_config.hpp"
#include "starmesh/model/tokenizer.hpp"
#include "starmesh/runtime/mesh_metrics.hpp"
#include "starmesh/runtime/messages.hpp"

namespace starmesh {

struct RouterOptions {
  std::string model_dir;         // tokenizer.json and config.json (the workers load the weights)
  int64_t block_size = 1024;     // when a request says 0
  // Control messages (placement, starting phase 2, registration): a worker that does not
  // answer within this fails the request with its name.
  std::chrono::milliseconds control_timeout{10000};
  std::chrono::milliseconds phase1_timeout{600000};  // one worker's phase 1
  std::chrono::milliseconds step_timeout{60000};     // between two tokens (and for the first)
  // A request that fits the workers but not their KV free now waits, first come first
  // served, at most this long for running requests to finish (0: refuse it at once), and
  // at most `max_queued` wait; a request no idle mesh could hold is refused at once.
  std::chrono::milliseconds queue_timeout{60000};
  size_t max_queued = 256;
  // A kept context nobody asked for this long is dropped (0: kept until its KV is needed).
  std::chrono::milliseconds context_ttl{1800000};
};

// What the router and its request drivers read (immutable once loaded).
struct RouterContext {
  RouterOptions options;
  LlamaConfig config;
  Tokenizer tokenizer;
  std::string model;  // model_signature(config)
  std::shared_ptr<RouterMetrics> metrics = std::make_shared<RouterMetrics>();  // updated by router and drivers
};

Expected<std::shared_ptr<const RouterContext>> load_router_context(const RouterOptions& options);

RouterActor spawn_router(caf::actor_system& sys, std::shared_ptr<const RouterContext> context);

}  // namespace starmesh
