#include "starmesh/runtime/recovery_policy.hpp"

namespace starmesh {

RecoveryDecision decide_recovery(const RecoveryCase& c) {
  if (c.code != ErrorCode::unavailable || c.cancelled) return {};
  if (c.kept_context) return {RecoveryAction::fail, "; the kept context's shards were on it: send the context again"};
  if (c.replans >= c.max_replans)
    return {RecoveryAction::fail, "; planned again " + std::to_string(c.replans) + " times already, giving up"};
  return {RecoveryAction::replan, {}};
}

}  // namespace starmesh
