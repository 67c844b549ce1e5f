#pragma once
// The typed protocols of the mesh (CAF 0.17.6): atoms, the message structs with their
// inspect overloads, and the actor interfaces. Every type here crosses processes, so
// register_mesh_types() must run on every actor_system_config of the mesh (router, workers,
// clients); a type missing there compiles fine and arrives as an empty message.
//
// Actors carry control, sizes and data-plane addresses (bytes), never tensors. Token ids
// that travel in bulk (the context) are packed as bytes: CAF serializes std::vector<uint8_t>
// as one block, other vectors element by element.
//
// The life of a request, message by message (tests/runtime/test_protocol.cpp checks it):
//   client  -> router   generate(GenerateOrder, sink)          -> Ticket
//   driver  -> client   progress(id, Progress)                  queued; encoding*; prefill
//   driver  -> router   place(id, PlacementAsk)                 -> Placement (reserves KV)
//   driver  -> worker h encode(EncodeOrder)      for every host -> EncodeReport (phase 1)
//   worker  -> driver   progress(id, host, blocks done)         after each block of phase 1
//   driver  -> worker q phase2(Phase2Order)      q: query host  -> CoordinatorActor
//   coord   -> driver   tokens(id, TokenBatch)*, then done(id, Phase2Report) | failed(id, Error)
//   driver  -> client   tokens(id, ClientChunk)*, then done(id, GenerateSummary) | failed(id, Error)
//   driver  -> worker h free(id)                 for every host -> free KV tokens
//   driver  -> router   release(id)
#include <caf/all.hpp>
#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "starmesh/model/kv_paging.hpp"
#include "starmesh/service/generate_service.hpp"

namespace starmesh {

// -- atoms (10 characters at most) --------------------------------------------------------
using register_atom = caf::atom_constant<caf::atom("register")>;
using generate_atom = caf::atom_constant<caf::atom("generate")>;
using place_atom = caf::atom_constant<caf::atom("place")>;
using release_atom = caf::atom_constant<caf::atom("release")>;
using members_atom = caf::atom_constant<caf::atom("members")>;
using encode_atom = caf::atom_constant<caf::atom("encode")>;
using encoded_atom = caf::atom_constant<caf::atom("encoded")>;
using phase2_atom = caf::atom_constant<caf::atom("phase2")>;
using free_atom = caf::atom_constant<caf::atom("free")>;
using served_atom = caf::atom_constant<caf::atom("served")>;
using status_atom = caf::atom_constant<caf::atom("status")>;
using tokens_atom = caf::atom_constant<caf::atom("tokens")>;
using done_atom = caf::atom_constant<caf::atom("done")>;
using failed_atom = caf::atom_constant<caf::atom("failed")>;
using cancel_atom = caf::atom_constant<caf::atom("cancel")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using finished_atom = caf::atom_constant<caf::atom("finished")>;
using leave_atom = caf::atom_constant<caf::atom("leave")>;
using keep_atom = caf::atom_constant<caf::atom("keep")>;
using drop_atom = caf::atom_constant<caf::atom("drop")>;
using attach_atom = caf::atom_constant<caf::atom("attach")>;
using deadline_atom = caf::atom_constant<caf::atom("deadline")>;  // router: a queued request's wait ends
using ttl_atom = caf::atom_constant<caf::atom("ttl")>;            // router: check a kept context's TTL
using beat_atom = caf::atom_constant<caf::atom("beat")>;          // router: probe every worker's liveness
using replan_atom = caf::atom_constant<caf::atom("replan")>;      // router: a request lost a worker
using progress_atom = caf::atom_constant<caf::atom("progress")>;  // phase-1 blocks done, stages for clients

// A kept context (encode once, ask many times) is named by the id of the request that
// encoded it; its KV is booked under this key, apart from the requests' own.
inline uint64_t context_key(uint64_t context_id) { return context_id | (uint64_t(1) << 63); }

// -- bulk token ids as bytes ----------------------------------------------------------------
std::vector<uint8_t> pack_ids(std::span<const int32_t> ids);
std::vector<int32_t> unpack_ids(const std::vector<uint8_t>& bytes);

// -- membership -------------------------------------------------------------------------------

// What a worker tells the router when it registers.
struct WorkerInfo {
  std::string endpoint;          // "127.0.0.1:PORT": where its actor is published (names it in errors)
  std::string device;            // "cpu", "cuda:0"
  int64_t kv_capacity = 0;       // KV pool size in tokens
  int64_t kv_free = 0;           // free tokens at registration
  int64_t kv_page_tokens = 0;    // KV is booked in whole pages of this many tokens (0: tokens)
  std::string model;             // model signature (model_signature()): the router refuses a mismatch
  std::string data_plane;        // e.g. "ucx-tcp": every worker of a mesh must speak the same one
  std::vector<uint8_t> address;  // data-plane address blob (e.g. a UCX worker address)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, WorkerInfo& x) {
  return f(caf::meta::type_name("WorkerInfo"), x.endpoint, x.device, x.kv_capacity, x.kv_free, x.kv_page_tokens,
           x.model, x.data_plane, x.address);
}

// The KV tokens a cache of `tokens` takes on worker `w`: whole pages, as the worker books it.
inline int64_t booked_on(const WorkerInfo& w, int64_t tokens) { return round_to_pages(tokens, w.kv_page_tokens); }

// One registered worker as the router sees it.
struct WorkerView {
  uint32_t id = 0;
  WorkerInfo info;
  int64_t reserved = 0;   // tokens the router has placed on it for running requests
  int32_t requests = 0;   // running requests that use it
  bool draining = false;  // leaving: finishes its requests, gets no new ones
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, WorkerView& x) {
  return f(caf::meta::type_name("WorkerView"), x.id, x.info, x.reserved, x.requests, x.draining);
}

// -- the public request, as it travels --------------------------------------------------------

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Error& x) {
  return f(caf::meta::type_name("Error"), x.message, x.code);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, SamplingParams& x) {
  return f(caf::meta::type_name("SamplingParams"), x.temperature, x.top_k, x.top_p, x.seed);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, GenerateRequest& x) {
  return f(caf::meta::type_name("GenerateRequest"), x.context_text, x.query_text, x.context_ids, x.query_ids, x.add_bos,
           x.mode, x.block_size, x.anchor_size, x.max_hosts, x.max_new_tokens, x.sampling, x.keep_context, x.context_id,
           x.tenant, x.priority);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ContextId& x) {
  return f(caf::meta::type_name("ContextId"), x.hi, x.lo);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, GenerateSummary& x) {
  return f(caf::meta::type_name("GenerateSummary"), x.context_tokens, x.query_tokens, x.generated_tokens, x.hosts,
           x.phase1_seconds, x.phase2_prefill_seconds, x.decode_seconds, x.stop_reason, x.context_id,
           x.phase1_max_host_seconds, x.request_id);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Progress& x) {
  return f(caf::meta::type_name("Progress"), x.stage, x.request_id, x.blocks_done, x.blocks_total, x.hosts);
}

struct GenerateOrder {
  GenerateRequest request;
  bool return_logits = false;  // tests: every chunk carries the logits each token was sampled from
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, GenerateOrder& x) {
  return f(caf::meta::type_name("GenerateOrder"), x.request, x.return_logits);
}

// Generated tokens as the client sees them.
struct ClientChunk {
  std::vector<int32_t> ids;
  std::string text;             // UTF-8 complete (an incomplete tail waits for the next chunk)
  std::vector<uint8_t> logits;  // f32 [ids.size(), vocab] as bytes, only with return_logits
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ClientChunk& x) {
  return f(caf::meta::type_name("ClientChunk"), x.ids, x.text, x.logits);
}

// -- placement ----------------------------------------------------------------------------------

// What the request driver asks of the router once the request is tokenized.
struct PlacementAsk {
  int64_t context_tokens = 0;
  int64_t local_tokens = 0;  // query + max new tokens: the query host holds them too
  int64_t block_size = 0;
  int64_t anchor_size = -1;
  int32_t max_hosts = 0;                 // 0: every worker with free capacity
  std::string tenant;                    // who asks (the API token): the queue takes turns between tenants
  Priority priority = Priority::normal;  // within its tenant's queue: higher first
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, PlacementAsk& x) {
  return f(caf::meta::type_name("PlacementAsk"), x.context_tokens, x.local_tokens, x.block_size, x.anchor_size,
           x.max_hosts, x.tenant, x.priority);
}

// The arguments of plan_blocks: every worker rebuilds the same BlockPlan from them.
struct PlanSpec {
  int64_t context_tokens = 0, block_size = 0, anchor_size = 0;
  int32_t hosts = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, PlanSpec& x) {
  return f(caf::meta::type_name("PlanSpec"), x.context_tokens, x.block_size, x.anchor_size, x.hosts);
}

// -- actor interfaces ---------------------------------------------------------------------------
// Declared before the messages that carry their handles.

struct TokenBatch;
struct Phase2Report;
struct EncodeOrder;
struct EncodeReport;
struct Phase2Order;
struct Placement;
struct Ticket;

// The query coordinator of one request (spawned on the query host). finished is internal:
// its generation thread says it is done.
using CoordinatorActor = caf::typed_actor<caf::reacts_to<cancel_atom, uint64_t>,     //
                                          caf::reacts_to<tokens_atom, uint64_t>,     // internal
                                          caf::reacts_to<finished_atom, uint64_t>>;  // internal

// The router-side driver of one request: receives the coordinator's stream and the client's
// cancel; tick is its own timer.
using RequestActor =
    caf::typed_actor<caf::reacts_to<tokens_atom, uint64_t, TokenBatch>,
                     caf::reacts_to<progress_atom, uint64_t, int32_t, int64_t>,  // attempt, host, its blocks done
                     caf::reacts_to<done_atom, uint64_t, Phase2Report>, caf::reacts_to<failed_atom, uint64_t, Error>,
                     caf::reacts_to<cancel_atom, uint64_t>, caf::reacts_to<tick_atom, uint64_t>>;

// Where the router streams a request's result (MeshClient, tests).
using ClientSinkActor = caf::typed_actor<
    caf::reacts_to<cancel_atom>,  // the caller's client went away
    caf::reacts_to<progress_atom, uint64_t, Progress>, caf::reacts_to<tokens_atom, uint64_t, ClientChunk>,
    caf::reacts_to<done_atom, uint64_t, GenerateSummary>, caf::reacts_to<failed_atom, uint64_t, Error>,
    caf::reacts_to<tick_atom, uint64_t>>;  // internal: its driver ended, its last message had time to come

// A context worker. encoded and served are internal: a compute thread finished phase 1, a
// shard loop ended.
using WorkerActor =
    caf::typed_actor<caf::replies_to<encode_atom, EncodeOrder>::with<EncodeReport>,
                     caf::replies_to<phase2_atom, Phase2Order>::with<CoordinatorActor>,
                     caf::replies_to<free_atom, uint64_t>::with<int64_t>,
                     caf::replies_to<keep_atom, uint64_t>::with<int64_t>,  // end, keeping the shard
                     caf::replies_to<drop_atom, uint64_t>::with<int64_t>,  // a kept context goes (0: all)
                     caf::replies_to<status_atom>::with<WorkerInfo>,
                     caf::reacts_to<encoded_atom, uint64_t>,  // internal
                     caf::reacts_to<served_atom, uint64_t>>;  // internal

using RouterActor =
    caf::typed_actor<caf::replies_to<register_atom, WorkerActor, WorkerInfo>::with<uint32_t>,
                     caf::replies_to<generate_atom, GenerateOrder, ClientSinkActor>::with<Ticket>,
                     caf::replies_to<place_atom, uint64_t, PlacementAsk>::with<Placement>,
                     caf::reacts_to<release_atom, uint64_t>,
                     // a request that lost a worker is planned again: its KV goes, it gets a
                     // fresh id for its next attempt (the driver stays the same)
                     caf::replies_to<replan_atom, uint64_t>::with<uint64_t>,
                     caf::replies_to<members_atom>::with<std::vector<WorkerView>>,
                     caf::reacts_to<deadline_atom, uint64_t>,               // a queued request's wait ends
                     caf::reacts_to<ttl_atom, uint64_t>,                    // a kept context may have expired
                     caf::reacts_to<beat_atom>,                             // probe the workers (liveness)
                     caf::replies_to<leave_atom, WorkerActor>::with<bool>,  // a worker drains
                     // keep: the request's shards become a kept context;
                     // attach: place a request (id, context id, local tokens) on one
                     // (named for clients by a random ContextId, owned by the request's tenant);
                     // attach: place a request (id, context name, its ask: tenant, local tokens, priority) on one;
                     // drop: a client drops one (not_found unless the tenant owns it)
                     caf::replies_to<keep_atom, uint64_t, ContextId, std::string, std::vector<int32_t>>::with<bool>,
                     caf::replies_to<attach_atom, uint64_t, ContextId, PlacementAsk>::with<Placement>,
                     caf::replies_to<drop_atom, ContextId, std::string>::with<bool>>;

// -- messages that carry handles ----------------------------------------------------------------

struct Ticket {
  uint64_t request_id = 0;
  RequestActor driver;  // where the client sends cancel
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Ticket& x) {
  return f(caf::meta::type_name("Ticket"), x.request_id, x.driver);
}

// One host of a placed request.
struct PlacedHost {
  uint32_t worker_id = 0;
  WorkerActor worker;
  std::string endpoint;          // for messages
  std::vector<uint8_t> address;  // data plane
  int64_t begin = 0, end = 0;    // context tokens of its shard
  int64_t reserve = 0;           // KV tokens reserved on it (shard, + query and generation on the last)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, PlacedHost& x) {
  return f(caf::meta::type_name("PlacedHost"), x.worker_id, x.worker, x.endpoint, x.address, x.begin, x.end, x.reserve);
}

struct Placement {
  PlanSpec plan;
  std::vector<PlacedHost> hosts;  // index = plan host; the last is the query host
  uint64_t kept_context = 0;      // an attach's answer: the kept context's id in the mesh
  int64_t local_tokens = 0;       // query and generated tokens the query host holds
  // An attach's answer when the kept context lost its shards: a fresh placement, and the
  // context's token ids to encode again (the driver keeps the new shards for the context).
  // Router to driver only, inside the router's process: never serialized.
  std::vector<int32_t> context_ids;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Placement& x) {
  return f(caf::meta::type_name("Placement"), x.plan, x.hosts, x.kept_context, x.local_tokens, x.context_ids);
}

// Phase 1 for one host: its blocks, and the star group of the request.
struct GroupMember {
  uint32_t worker_id = 0;
  std::string endpoint;
  std::vector<uint8_t> address;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, GroupMember& x) {
  return f(caf::meta::type_name("GroupMember"), x.worker_id, x.endpoint, x.address);
}

struct EncodeOrder {
  uint64_t request_id = 0;
  PlanSpec plan;
  int32_t host = 0;                      // this worker's host index in the plan (its data-plane rank)
  std::vector<uint8_t> anchor_ids;       // context tokens [0, anchor_size), packed (pack_ids); empty if unused
  std::vector<uint8_t> shard_ids;        // context tokens [begin, end) of this host, packed
  int64_t local_capacity = 0;            // query host: query + max new tokens; 0 elsewhere
  int64_t step_timeout_ms = 60000;       // phase 2: the longest wait for the next message of a step
  std::vector<GroupMember> group;        // index = plan host = data-plane rank
  RequestActor driver;                   // told if the shard loop fails
  bool keep = false;                     // the shard may be kept after phase 2 (keep, not free)
  uint64_t reuse_context = 0;            // serve a kept context's shard: no phase 1, no ids
  uint64_t tenant_tag = 0;               // the tenant's tag (tenant_tag()): phase 1 takes turns by it
  Priority priority = Priority::normal;  // within its tenant's phase-1 turns: higher first
  // The attempt's data-plane key (kMessageKeyBytes random bytes, the same for every host):
  // the group's messages are authenticated under it. A secret: never logged.
  std::vector<uint8_t> data_plane_key;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, EncodeOrder& x) {
  return f(caf::meta::type_name("EncodeOrder"), x.request_id, x.plan, x.host, x.anchor_ids, x.shard_ids,
           x.local_capacity, x.step_timeout_ms, x.group, x.driver, x.keep, x.reuse_context, x.tenant_tag, x.priority,
           x.data_plane_key);
}

struct EncodeReport {
  uint64_t request_id = 0;
  int32_t host = 0;
  int64_t tokens = 0;         // context tokens encoded (the shard)
  double phase1_seconds = 0;  // compute time of this host's phase 1
  int64_t kv_free = 0;        // the worker's free KV tokens afterwards
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, EncodeReport& x) {
  return f(caf::meta::type_name("EncodeReport"), x.request_id, x.host, x.tokens, x.phase1_seconds, x.kv_free);
}

// Phase 2 on the query host.
struct Phase2Order {
  uint64_t request_id = 0;
  std::vector<int32_t> query;  // the query tokens (short)
  int32_t max_new_tokens = 0;
  SamplingParams sampling;
  std::vector<int32_t> stop_ids;
  bool return_logits = false;
  RequestActor sink;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Phase2Order& x) {
  return f(caf::meta::type_name("Phase2Order"), x.request_id, x.query, x.max_new_tokens, x.sampling, x.stop_ids,
           x.return_logits, x.sink);
}

// Tokens from the coordinator, as they are sampled.
struct TokenBatch {
  std::vector<int32_t> ids;
  std::vector<uint8_t> logits;  // f32 [ids.size(), vocab] as bytes, only with return_logits
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, TokenBatch& x) {
  return f(caf::meta::type_name("TokenBatch"), x.ids, x.logits);
}

struct Phase2Report {
  int64_t query_tokens = 0, generated_tokens = 0;
  double prefill_seconds = 0, decode_seconds = 0;
  StopReason stop_reason = StopReason::max_tokens;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Phase2Report& x) {
  return f(caf::meta::type_name("Phase2Report"), x.query_tokens, x.generated_tokens, x.prefill_seconds,
           x.decode_seconds, x.stop_reason);
}

// -- registration and errors --------------------------------------------------------------------

// Registers every type above (and the actor handles) on `cfg`. Call it on every side.
void register_mesh_types(caf::actor_system_config& cfg);

// The mesh's errors carry a code and a sentence for the user: make one from an Error, and read
// both back from any caf::error (CAF's own errors get a code: a request timeout is `timeout`, a
// receiver that went away `unavailable`, the rest `internal`, and a message from CAF).
caf::error mesh_error(Error error);
caf::error mesh_error(ErrorCode code, std::string message);
Error to_error(const caf::error& e);
std::string describe(const caf::error& e);  // to_error(e).message

// "10 s", "0.2 s": durations in messages.
std::string format_seconds(std::chrono::milliseconds ms);

}  // namespace starmesh
