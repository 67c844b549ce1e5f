#pragma once
// What the router and its request drivers read: the options, the model's config and tokenizer
// (immutable once loaded), and the metrics both update.
#include <chrono>
#include <memory>
#include <string>

#include "starmesh/model/llama_config.hpp"
#include "starmesh/model/tokenizer.hpp"
#include "starmesh/runtime/admission_book.hpp"
#include "starmesh/runtime/mesh_metrics.hpp"
#include "starmesh/runtime/scale_policy.hpp"

namespace starmesh {

struct RouterOptions {
  std::string model_dir;      // tokenizer.json and config.json (the workers load the weights)
  int64_t block_size = 1024;  // when a request says 0
  // Control messages (placement, starting phase 2, registration): a worker that does not
  // answer within this fails the request with its name.
  std::chrono::milliseconds control_timeout{10000};
  std::chrono::milliseconds phase1_timeout{600000};  // one worker's phase 1
  std::chrono::milliseconds step_timeout{60000};     // between two tokens (and for the first)
  // Liveness: every `heartbeat` the router asks each worker for its status; one that has not
  // answered for `liveness_timeout` (stopped, hung, cut off) is taken out of the mesh and the
  // requests on it fail at once with `unavailable`, naming it (0: no heartbeats).
  std::chrono::milliseconds heartbeat{1000};
  std::chrono::milliseconds liveness_timeout{5000};
  // The queue and kept contexts (admission_book.hpp has the rules).
  AdmissionOptions admission;
  // A request that loses a worker is planned again on the workers left this many times at
  // most (recovery_policy.hpp; 0: never, it fails with `unavailable`).
  int max_replans = 3;
  // The id of the router's first request (then one more each). The router command draws it at
  // random: a restarted router's requests then do not reuse the data-plane groups (request id
  // mod 2^16) of its predecessor's, whose late messages may still wait in a worker's queue.
  // Below 2^48 (kept contexts' book keys use the top bit).
  uint64_t first_request_id = 1;
  // The desired-worker rule behind starmesh_desired_workers (scale_policy.hpp).
  ScaleOptions scale;
};

struct RouterContext {
  RouterOptions options;
  LlamaConfig config;
  Tokenizer tokenizer;
  std::string model;                                                           // model_signature(config)
  std::shared_ptr<RouterMetrics> metrics = std::make_shared<RouterMetrics>();  // updated by router and drivers
  uint64_t tenant_salt = 0;  // random per router: workers see tenant tags, never API tokens
};

// What workers know of a tenant (an API token, a secret): a salted hash, for taking turns.
uint64_t tenant_tag(const RouterContext& context, const std::string& tenant);

Expected<std::shared_ptr<const RouterContext>> load_router_context(const RouterOptions& options);

}  // namespace starmesh
