#include "starmesh/runtime/recovery_policy.hpp"

namespace starmesh {

RecoveryDecision decide_recovery(const RecoveryCase& c) {
  if (c.code == ErrorCode::unauthenticated)
    return {RecoveryAction::fail,
            "; a data-plane message of the request failed authentication (sent by someone who is not one of its "
            "hosts): not planned again; a retry gets a fresh key",
            ErrorCode::unavailable};
  if (c.code != ErrorCode::unavailable || c.cancelled) return {};
  if (c.replans >= c.max_replans)
    return {RecoveryAction::fail, "; planned again " + std::to_string(c.replans) + " times already, giving up"};
  return {RecoveryAction::replan, {}};
}

}  // namespace starmesh
