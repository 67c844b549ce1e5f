#include "starmesh/runtime/removal_cost.hpp"

#include <algorithm>
#include <limits>

namespace starmesh {
namespace {
constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
}  // namespace

int64_t removal_cost(const WorkerLoad& w, const RemovalCostOptions& o) {
  if (w.draining) return -1;
  // Each term is clamped first, so the sum of three stays far from int64 overflow.
  auto clamp = [](int64_t v) { return std::clamp<int64_t>(v, 0, kMax); };
  const int64_t requests = w.running_requests > 0 && clamp(o.per_request) > kMax / w.running_requests
                               ? kMax
                               : clamp(w.running_requests) * clamp(o.per_request);
  return std::min(kMax, clamp(w.kept_context_tokens) + clamp(w.reserved_tokens) + requests);
}

}  // namespace starmesh
