// The scale signal on a live mesh: a burst of requests that the one worker's KV cannot hold at
// once queues, starmesh_desired_workers rises above the minimum while it does, every request
// completes with the reference tokens, and the signal falls back to the minimum after.
#include <doctest/doctest.h>

#include <atomic>
#include <thread>

#include "process_mesh.hpp"
#include "starmesh/api/api_client.hpp"
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
  std::vector<std::vector<int32_t>> contexts, got(kRequests);
  for (int i = 0; i < kRequests; ++i) contexts.push_back(random_ids(1200, 100 + i));
  std::vector<std::string> errors(kRequests);
  std::atomic<int> done{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < kRequests; ++i)
    clients.emplace_back([&, i] {
      auto client = ApiClient::connect(address);
      if (!client) {
        errors[i] = client.error().message;
      } else {
        GenerateRequest r;
        r.context_ids = contexts[i];
        r.query_ids = query;
        r.block_size = 256;
        r.max_new_tokens = 8;
        auto s = (*client)->generate(r, [&](const TokenChunk& c) {
          got[i].insert(got[i].end(), c.ids.begin(), c.ids.end());
          return true;
        });
        if (!s) errors[i] = s.error().message;
      }
      ++done;
    });
  // While the burst runs: the queue is seen, and the signal above the one worker there is.
  double most_desired = 0, most_queued = 0;
  while (done.load() < kRequests) {
    most_desired = std::max(most_desired, gauge("starmesh_desired_workers"));
    most_queued = std::max(most_queued, gauge("starmesh_requests_queued"));
    std::this_thread::sleep_for(20ms);
  }
  for (auto& t : clients) t.join();
  MESSAGE("burst of " << kRequests << ": at most " << most_queued << " queued, desired workers up to " << most_desired);
  CHECK(most_queued >= 1);
  CHECK(most_desired >= 2);
  for (int i = 0; i < kRequests; ++i) {
    CAPTURE(i);
    CHECK(errors[i].empty());
    CHECK(got[i] == star(contexts[i], query, 256, 1, 8).ids);
  }
  // Idle again: back to the minimum, nothing queued or reserved.
  for (int i = 0; i < 100 && gauge("starmesh_desired_workers") != 1; ++i) std::this_thread::sleep_for(50ms);
  CHECK(gauge("starmesh_desired_workers") == 1);
  CHECK(gauge("starmesh_requests_queued") == 0);
  CHECK(gauge("starmesh_kv_demand_tokens") == 0);
}
