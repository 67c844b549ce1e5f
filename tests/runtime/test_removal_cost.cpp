// The per-worker removal cost behind starmesh_worker_removal_cost (removal_cost.hpp).
#include <doctest/doctest.h>

#include <limits>

#include "starmesh/runtime/removal_cost.hpp"

using namespace starmesh;

TEST_CASE("removal cost: whole kept contexts, running requests' KV, and a weight per request") {
  CHECK(removal_cost({}) == 0);  // idle
  WorkerLoad w;
  w.kept_context_tokens = 12000;
  w.reserved_tokens = 3000;
  w.running_requests = 2;
  CHECK(removal_cost(w) == 12000 + 3000 + 2 * 1024);
  CHECK(removal_cost(w, {0}) == 15000);
  // Same KV, one more request: it costs more.
  WorkerLoad busier = w;
  ++busier.running_requests;
  CHECK(removal_cost(busier) > removal_cost(w));
}

TEST_CASE("removal cost: a draining worker goes first, and the cost fits pod-deletion-cost's int32") {
  WorkerLoad w;
  w.kept_context_tokens = 1 << 20;
  w.draining = true;
  CHECK(removal_cost(w) == -1);
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  WorkerLoad huge;
  huge.kept_context_tokens = int64_t(1) << 40;
  huge.reserved_tokens = std::numeric_limits<int64_t>::max();
  huge.running_requests = std::numeric_limits<int64_t>::max();
  CHECK(removal_cost(huge) == kMax);
  WorkerLoad many;
  many.running_requests = int64_t(1) << 30;
  CHECK(removal_cost(many) == kMax);
  WorkerLoad negative;  // nothing negative counts
  negative.reserved_tokens = -5;
  CHECK(removal_cost(negative) == 0);
}
