#pragma once
// The router-side driver of one request (spawned by the router, one per request): tokenize,
// place, phase 1 on every host, phase 2 on the query host, relay the tokens to the client's
// sink with their text, then free the shards everywhere, release the placement and tell the
// client the summary or the error. Every step has a timeout and every worker involved is
// monitored, so a worker that dies or does not answer ends the request with an error that
// names it ("worker 3 at 127.0.0.1:PORT did not answer within 10 s"), never a hang.
#include <chrono>
#include <map>
#include <memory>

#include "starmesh/model/utf8_stream.hpp"
#include "starmesh/runtime/messages.hpp"
#include "starmesh/runtime/router_context.hpp"

namespace starmesh {

struct DriverSetup {
  std::shared_ptr<const RouterContext> context;
  RouterActor router;
  uint64_t request_id = 0;
  GenerateOrder order;
  ClientSinkActor client;
};

// The context and query tokens of a request, validated (request_tokens below).
struct RequestTokens {
  std::vector<int32_t> context, query;
  int64_t block_size = 0, anchor_size = -1;
  int max_hosts = 0;
};

// The driver's state (here because spawning a stateful actor needs the complete type).
struct DriverState {
  static inline const char* name = "request_driver";
  std::shared_ptr<DriverSetup> setup;
  RequestTokens tokens;
  Placement placement;
  bool placed = false;
  bool reencoding = false;  // a question encoding its kept context again (it lost its shards)
  size_t encoded = 0;
  std::chrono::steady_clock::time_point phase1_start;
  CoordinatorActor coordinator;
  uint64_t tick = 0;  // the armed step timer
  bool finished = false;
  bool cancel_requested = false;
  Utf8Stream text;
  GenerateSummary summary;
  RequestTimes times;                           // arrival and tokens out, for the metrics
  std::map<caf::actor_addr, size_t> host_of;    // monitored workers
  std::vector<int64_t> blocks_done, blocks_of;  // phase-1 progress, per host of this attempt
  int64_t blocks_total = 0;
  // Recovery (recovery_policy.hpp): the mesh knows each attempt by its own id (the client
  // only by setup->request_id); a lost worker starts another attempt, which replays the tokens
  // the client already has into its query.
  uint64_t mesh_id = 0;
  int replans = 0;
  bool replanning = false;        // between a lost worker and the next attempt's placement
  uint64_t replan_tick = 0;       // the tick that starts the next attempt
  std::vector<int32_t> streamed;  // generated ids sent to the client, in order
  size_t replayed = 0;            // of those, the ones in this attempt's query
  std::string lost;               // what the last recovered failure was (for the log and errors)
  // Whether a message or answer about `attempt` (a mesh id) belongs to the attempt running now:
  // anything about an earlier one, or arriving between attempts, or after the end, is ignored.
  bool current(uint64_t attempt) const { return !finished && !replanning && mesh_id == attempt; }

  std::string host_name(size_t h) const;  // "worker 3 at 127.0.0.1:PORT"
};

RequestActor::behavior_type request_driver(RequestActor::stateful_pointer<DriverState> self,
                                           std::shared_ptr<DriverSetup> setup);

// The context and query tokens of a request, validated ("global" mode folds into one
// block); an error (invalid_argument) says what to change.
Expected<RequestTokens> request_tokens(const RouterContext& ctx, const GenerateRequest& r);

}  // namespace starmesh
