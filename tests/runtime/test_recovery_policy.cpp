// When a request that lost a worker is planned again (recovery_policy.hpp).
#include <doctest/doctest.h>

#include "starmesh/runtime/recovery_policy.hpp"

using namespace starmesh;

TEST_CASE("a lost worker is recovered from, up to the limit") {
  RecoveryCase c;
  c.code = ErrorCode::unavailable;
  for (int replans = 0; replans < 3; ++replans) {
    c.replans = replans;
    CHECK(decide_recovery(c).action == RecoveryAction::replan);
  }
  c.replans = 3;
  const RecoveryDecision d = decide_recovery(c);
  CHECK(d.action == RecoveryAction::fail);
  CHECK(d.note.find("3 times") != std::string::npos);
  c.max_replans = 0;  // recovery off
  c.replans = 0;
  CHECK(decide_recovery(c).action == RecoveryAction::fail);
}

TEST_CASE("other failures and cancelled requests are not planned again") {
  for (ErrorCode code : {ErrorCode::timeout, ErrorCode::refused, ErrorCode::invalid_argument, ErrorCode::internal,
                         ErrorCode::overloaded, ErrorCode::cancelled}) {
    RecoveryCase c;
    c.code = code;
    CHECK(decide_recovery(c).action == RecoveryAction::fail);
  }
  RecoveryCase cancelled;
  cancelled.code = ErrorCode::unavailable;
  cancelled.cancelled = true;
  CHECK(decide_recovery(cancelled).action == RecoveryAction::fail);
}

TEST_CASE("a forged data-plane message fails the request at once, as unavailable to the client") {
  RecoveryCase c;
  c.code = ErrorCode::unauthenticated;
  for (int replans = 0; replans < 3; ++replans) {  // never planned again, whatever the count
    c.replans = replans;
    const RecoveryDecision d = decide_recovery(c);
    CHECK(d.action == RecoveryAction::fail);
    REQUIRE(d.code.has_value());
    CHECK(*d.code == ErrorCode::unavailable);  // not the client's credentials: retriable with a fresh key
  }
  RecoveryCase lost;
  lost.code = ErrorCode::unavailable;
  CHECK_FALSE(decide_recovery(lost).code.has_value());  // other failures keep their code
}
