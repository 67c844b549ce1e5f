#pragma once
// What becomes of a kept context when a worker holding a shard of it leaves (drains) or is
// lost. A plain function of the case, tested without actors
// (tests/runtime/test_kept_context_policy.cpp); the admission book applies it.
//
// The router keeps each kept context's token ids beside its book entry, so a context that
// loses a shard is not lost: its shards on the other workers go and its KV booking with them,
// and the next question over it encodes it again (phase 1, same block size and anchor) on the
// workers there are then. Rules:
// - Lost: encoded again (its shards go now). A question running over it has lost a host; it
//   is planned again like any request, which encodes the context again.
// - Leaving: the questions running over it finish on the leaving worker's shard first; then
//   (at once when there are none) it is encoded again. New questions wait in the queue.
// - Dropped instead (as before this rule) when the router has no tokens for it, when the
//   client has asked to drop it, or when the contexts waiting to be encoded again would hold
//   more than `max_stale_tokens` token ids in the router's memory.
#include <cstdint>

namespace starmesh {

enum class WorkerEvent : uint8_t { leaving, lost };

struct KeptContextCase {
  WorkerEvent event = WorkerEvent::lost;
  bool has_tokens = false;       // the router holds its context's token ids
  bool drop_asked = false;       // the client dropped it; it goes once idle
  int users = 0;                 // questions running over it (or waiting for it)
  int64_t tokens = 0;            // its context tokens
  int64_t stale_tokens = 0;      // the tokens of the contexts already waiting to be encoded again
  int64_t max_stale_tokens = 0;  // the router's bound on those
};

enum class KeptContextFate : uint8_t { drop, drop_when_idle, reencode, reencode_when_idle };

KeptContextFate decide_kept_context(const KeptContextCase& c);

}  // namespace starmesh
