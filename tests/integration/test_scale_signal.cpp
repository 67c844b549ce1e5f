// The scale signal on a live mesh: a burst of requests that the one worker's KV cannot hold at
// once queues, starmesh_desired_workers rises above the minimum while it does, every request
// completes with the reference tokens, and the signal falls back to the minimum after.
#include <doctest/doctest.h>

#include <atomic>
#include <thread>

#include "concurrent_clients.hpp"
#include "process_mesh.hpp"
#include "support/http_client.hpp"

using namespace starmesh;
using namespace starmesh::test;
using namespace std::chrono_literals;

TEST_CASE_FIXTURE(ProcessMesh, "starmesh_desired_workers rises with a queued burst and falls back after") {
  // One worker of 2048 KV tokens; each request holds ~1300 of them: one runs at a time.
  const std::string address = start_with_api(
      1, {"--scale-min-workers", "1", "--scale-target-kv", "0.9", "--queue-timeout", "120"}, true, {2048});
  REQUIRE(!address.empty());
  const uint16_t router_metrics = mesh->metrics_ports()[0];
  auto gauge = [&](const std::string& series) {
    return metric_value(http_get(router_metrics, "/metrics").body, series);
  };
  CHECK(gauge("starmesh_desired_workers") == 1);

  constexpr int kRequests = 5;
  const auto query = random_ids(6, 99);
  std::vector<std::vector<int32_t>> contexts;
  for (int i = 0; i < kRequests; ++i) contexts.push_back(random_ids(1200, 100 + i));
  std::vector<GenerateRequest> requests(kRequests);
  for (int i = 0; i < kRequests; ++i) {
    requests[size_t(i)].context_ids = contexts[size_t(i)];
    requests[size_t(i)].query_ids = query;
    requests[size_t(i)].block_size = 256;
    requests[size_t(i)].max_new_tokens = 8;
  }
  ConcurrentClients clients(address, std::move(requests));
  // While the burst runs: the queue is seen, and the signal above the one worker there is.
  double most_desired = 0, most_queued = 0;
  while (clients.done() < kRequests) {
    most_desired = std::max(most_desired, gauge("starmesh_desired_workers"));
    most_queued = std::max(most_queued, gauge("starmesh_requests_queued"));
    std::this_thread::sleep_for(20ms);
  }
  clients.join();
  MESSAGE("burst of " << kRequests << ": at most " << most_queued << " queued, desired workers up to " << most_desired);
  CHECK(most_queued >= 1);
  CHECK(most_desired >= 2);
  for (int i = 0; i < kRequests; ++i) {
    CAPTURE(i);
    CHECK(clients.errors[size_t(i)].empty());
    CHECK(clients.tokens[size_t(i)] == star(contexts[size_t(i)], query, 256, 1, 8).ids);
  }
  // Idle again: back to the minimum, nothing queued or reserved.
  for (int i = 0; i < 100 && gauge("starmesh_desired_workers") != 1; ++i) std::this_thread::sleep_for(50ms);
  CHECK(gauge("starmesh_desired_workers") == 1);
  CHECK(gauge("starmesh_requests_queued") == 0);
  CHECK(gauge("starmesh_kv_demand_tokens") == 0);
}
