#pragma once
// The router's policy, as a plain object: which request gets KV now, which waits in the
// queue and which is refused, and the kept contexts (encode once, ask many times) with their
// TTL, least-recently-used eviction and references. State in, decisions out, time passed in:
// the router actor only turns messages and timers into calls here and carries out the
// Decisions (deliver placements and refusals, tell workers to drop contexts, arm timers).
// tests/runtime/test_admission_book.cpp and test_admission_book_reencode.cpp cover every rule
// without CAF (admission_book_workers.cpp holds what workers leaving or lost do).
//
// Rules:
// - Admission: placed at once when nobody waits and it fits the KV free now (nobody jumps the
//   queue: it would take KV the head waits for); refused (`refused`) when no idle mesh could
//   hold it; refused (`overloaded`) when the queue is full or queueing is off; else queued
//   until it fits or its deadline (then placed if it fits by then, else `timeout`). The queue
//   serves one request at a time, taking turns between tenants (API tokens, in name order
//   after the one served last), each tenant's requests by priority, then first come first
//   served: one tenant's burst delays another's request by at most one of its own, and a
//   tenant's priorities reorder only its own requests. Idle kept contexts are dropped, least recently used
//   first, whenever that is what it takes to place something.
// - Kept contexts: a request's placement becomes a kept context on keep(); a question over
//   one (attach) books only its query tokens on the context's query host and holds a reference
//   from the moment it is admitted or queued, so nothing drops the context meanwhile. An idle
//   context (no references) goes after `context_ttl`, on drop() (or when its last user ends,
//   if it had users), or when its KV is needed.
// - A kept context whose worker leaves or is lost keeps its token ids here and is encoded again
//   on its next question (kept_context_policy.hpp has the rules; the question's placement then
//   carries the ids, and its keep() puts the new shards in place of the old). When the workers
//   left could never hold it, that question is refused `unavailable` (retriable: the mesh may
//   grow).
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "starmesh/core/expected.hpp"
#include "starmesh/runtime/kept_context_policy.hpp"
#include "starmesh/runtime/membership.hpp"
#include "starmesh/runtime/removal_cost.hpp"
#include "starmesh/service/context_id.hpp"

namespace starmesh {

struct AdmissionOptions {
  std::chrono::milliseconds queue_timeout{60000};  // 0: refuse what does not fit now
  size_t max_queued = 256;
  std::chrono::milliseconds context_ttl{1800000};  // 0: kept until their KV is needed
  // The token ids the router holds for kept contexts that lost their shards and wait to be
  // encoded again (64 MiB of ids); past it such a context is dropped.
  int64_t max_stale_tokens = int64_t(1) << 24;
};

// The timers the router arms: a queued request's deadline, a kept context's TTL check.
enum class TimerKind : uint8_t { queue_deadline, context_ttl };
struct TimerOrder {
  TimerKind kind;
  uint64_t id;  // the request, or the context
  std::chrono::milliseconds after;
};

// What one call decided beyond its own answer; the router carries it out in this order.
struct Decisions {
  struct Answer {  // a queued request leaves the queue: placed, or refused with why
    uint64_t id;
    Expected<Placement> placement;
    std::chrono::duration<double> waited;
  };
  enum class Why : uint8_t { evicted, ttl, requested, worker_left, worker_lost, superseded };
  struct Dropped {        // a kept context's shards go: its workers free them
    uint64_t context_id;  // the id its workers keep the shards under
    Why why;
    std::vector<WorkerActor> workers;
    bool reencode = false;  // the context stays, to be encoded again on its next question
  };
  std::vector<Answer> answers;
  std::vector<Dropped> dropped;
  std::vector<TimerOrder> timers;
};

// The answer to an admission: placed now, queued (answered later through Decisions::answers),
// or refused.
struct Admission {
  enum class Kind : uint8_t { placed, queued, refused } kind = Kind::refused;
  std::optional<Placement> placement;  // placed
  Error error;                         // refused
};

class AdmissionBook {
 public:
  using Time = std::chrono::steady_clock::time_point;

  AdmissionBook(std::string model, AdmissionOptions options) : members_(std::move(model)), options_(options) {}

  // The workers: register (add), find, view. After add(), or a worker's loss or leave, call
  // capacity_changed / worker_lost / worker_leaving so queued requests are looked at again.
  Membership& members() { return members_; }
  const Membership& members() const { return members_; }

  // A new request `id` asks for KV.
  Admission admit(uint64_t id, const PlacementAsk& ask, Time now, Decisions& out);
  // A question `id` over kept context `context_id` asks for `local_tokens` on its query host
  // (queued, at `priority` among its tenant's requests).
  Admission attach(uint64_t id, uint64_t context_id, int64_t local_tokens, Time now, Decisions& out,
                   Priority priority = Priority::normal);
  // The request ended (or its driver went away): its KV, queue entry and reference go.
  void release(uint64_t id, Time now, Decisions& out);
  // The request ended keeping its context: its placement becomes kept context `id`, which
  // clients name `name` (random, unguessable) and only `tenant` may ask or drop; `tokens` are
  // its context's ids (empty: it cannot be encoded again). False when it was not placed or its
  // shards no longer fit the book (the workers drop them). A question that encoded its kept
  // context again: its shards become the context's (false, and they are dropped, when another
  // question did so first or the context went meanwhile).
  bool keep(uint64_t id, Time now, Decisions& out, ContextId name = {}, std::string tenant = {},
            std::vector<int32_t> tokens = {});
  // The kept context `name` names for `tenant`: not_found when there is none or it is another
  // tenant's (one answer for both: a name tells nothing about other tenants' contexts).
  Expected<uint64_t> resolve(const ContextId& name, const std::string& tenant) const;
  // A client drops a kept context (now, or when the requests asking it end).
  void drop(uint64_t context_id, Time now, Decisions& out);

  // Timers.
  void queue_deadline(uint64_t id, Time now, Decisions& out);
  void context_ttl(uint64_t context_id, Time now, Decisions& out);

  // Workers.
  void capacity_changed(Time now, Decisions& out);  // a worker joined, or KV was freed
  void worker_leaving(uint32_t worker_id, Time now, Decisions& out);
  void worker_lost(uint32_t worker_id, Time now, Decisions& out);

  // The running requests with a shard or their query tokens on `worker_id`.
  std::vector<uint64_t> requests_on(uint32_t worker_id) const;
  // What removing `worker_id` would cost (removal_cost.hpp): its kept contexts, whole, and its
  // running requests and their KV.
  WorkerLoad load_on(uint32_t worker_id) const;

  size_t queued() const { return queue_.size(); }
  // What the scale rule reads (scale_policy.hpp): the KV the queued requests ask for (context
  // + local tokens; local only for a question over a kept context), the KV the kept contexts
  // hold, and the requests running now.
  struct Load {
    int64_t queued_tokens = 0, kept_tokens = 0;
    int64_t running = 0;
  };
  Load load() const;
  size_t kept_contexts() const { return kept_.size(); }
  bool is_kept(uint64_t context_id) const { return kept_.count(context_id) > 0; }
  int context_users(uint64_t context_id) const;  // -1: not kept
  // Whether kept context `context_id` lost its shards and waits to be encoded again.
  bool needs_encoding(uint64_t context_id) const;

 private:
  struct Waiting {
    uint64_t id;
    PlacementAsk ask;
    uint64_t context_id;  // a question over a kept context: ask.local_tokens only
    Time since;
  };
  struct Kept {
    Placement placement;  // no hosts while stale
    int users = 0;
    bool drop_when_idle = false;
    Time last_used;
    ContextId name;
    std::string tenant;
    std::shared_ptr<const std::vector<int32_t>> tokens;  // its context's ids (null: cannot be encoded again)
    uint64_t shard_id = 0;                               // the id its workers keep its shards under
    bool stale = false;                                  // no shards: the next question encodes it again
    bool reencode_when_idle = false;                     // a worker of it leaves: stale once its questions end
  };

  Admission admit_or_queue(uint64_t id, const PlacementAsk& ask, uint64_t context_id, Time now, Decisions& out);
  Expected<Placement> try_place(uint64_t id, const PlacementAsk& ask, uint64_t context_id, Time now, Decisions& out);
  Expected<Placement> place_evicting(uint64_t id, const PlacementAsk& ask, Decisions& out);
  Expected<Placement> try_attach(uint64_t id, uint64_t context_id, int64_t local_tokens, Time now, Decisions& out);
  Expected<Placement> try_reencode(uint64_t id, uint64_t context_id, int64_t local_tokens, Time now, Decisions& out);
  bool rekeep(uint64_t id, uint64_t context_id, Time now, Decisions& out);
  void worker_gone(uint32_t worker_id, WorkerEvent event, Time now, Decisions& out);
  void make_stale(uint64_t context_id, Decisions::Why why, Decisions& out);
  // What encoding kept context `k` again asks for: its whole context, as it was planned.
  static PlacementAsk reencode_ask(const Kept& k, int64_t local_tokens);
  static bool encodes_again(const Kept& k) { return k.stale || k.reencode_when_idle; }
  // The questions running on kept context `context_id`'s shards (not queued, not encoding it).
  int readers(uint64_t context_id) const;
  bool fits_when_idle(const PlacementAsk& ask, uint64_t context_id) const;
  Error never_fits(uint64_t id, const PlacementAsk& ask, uint64_t context_id);
  bool evict_one(Decisions& out);
  void drop_context(uint64_t context_id, Decisions::Why why, Decisions& out);
  void detach(uint64_t id, Time now, Decisions& out);
  void drain_queue(Time now, Decisions& out);
  std::vector<uint64_t> contexts_on(uint32_t worker_id) const;
  // How errors name a kept context to clients: its public name (its id when it has none).
  std::string label(uint64_t context_id) const;

  Membership members_;
  AdmissionOptions options_;
  std::deque<Waiting> queue_;
  std::map<uint64_t, Placement> placements_;  // running requests placed on fresh shards
  std::map<uint64_t, Kept> kept_;             // by context id
  std::map<ContextId, uint64_t> names_;       // a kept context's public name -> its id
  std::map<uint64_t, uint64_t> attached_;     // request id -> the kept context it uses
  std::string last_served_;                   // the tenant the queue served last
  // The queued request served next: the oldest of the next tenant after last_served_.
  std::deque<Waiting>::iterator next_in_turn();
};

}  // namespace starmesh
