#pragma once
// When a request that lost a worker is planned again on the workers left (the request driver
// carries it out: request_driver.cpp). A plain function of the failure and the request, tested
// without actors (tests/runtime/test_recovery_policy.cpp).
//
// Recovered: a failure with code `unavailable` (a host's process ended or its connection
// dropped, the router took a worker out for missing heartbeats, the query coordinator ended,
// a data-plane peer failed) while the request runs, up to `max_replans` times. The next
// attempt encodes the whole context again on the workers left, replays the tokens the client
// already has into the query, and streams on after them.
// A question over a kept context is recovered the same way: the router holds the context's ids
// and encodes it again on the workers left (kept_context_policy.hpp).
// Not recovered: other codes (a timeout, a refusal, a bad request) and a cancelled request. The
// client then gets the error with its code; `unavailable` is the retriable one.
// An `unauthenticated` failure is a data-plane message that failed its MAC: someone who is not
// a host of the attempt sent it (an injection attempt). It is not planned again (the same
// workers would meet the same sender); the client gets it as `unavailable` (retriable: its
// retry gets a fresh key), since to a client `unauthenticated` means its own credentials.
#include <cstdint>
#include <optional>
#include <string>

#include "starmesh/core/error_code.hpp"

namespace starmesh {

struct RecoveryCase {
  ErrorCode code = ErrorCode::internal;
  bool cancelled = false;  // the client cancelled (or went away)
  int replans = 0;         // attempts planned again so far
  int max_replans = 3;
};

enum class RecoveryAction : uint8_t { replan, fail };

struct RecoveryDecision {
  RecoveryAction action = RecoveryAction::fail;
  std::string note;               // why not, appended to the error the client gets (empty: nothing to add)
  std::optional<ErrorCode> code;  // the code the client gets instead of the failure's own
};

RecoveryDecision decide_recovery(const RecoveryCase& c);

}  // namespace starmesh
