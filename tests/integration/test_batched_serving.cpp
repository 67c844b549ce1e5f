// Many users at once on a real mesh: requests whose decode steps overlap on a worker run as
// one batch there (starmesh_worker_decode_batch_size says so), and every request still gets
// the tokens the single-process engine gives it alone.
#include <doctest/doctest.h>

#include "concurrent_clients.hpp"
#include "process_mesh.hpp"
#include "support/http_client.hpp"

using namespace starmesh;
using namespace starmesh::test;

TEST_CASE_FIXTURE(ProcessMesh, "concurrent requests decode in batches on their query hosts, each as alone") {
  // Two workers: each request's two hosts exchange partials over the data plane, so a batch
  // waits on several requests' networks at once.
  const std::string address = start_with_api(2, {}, true, {8192, 8192});
  REQUIRE(!address.empty());
  constexpr int kRequests = 8;
  std::vector<std::vector<int32_t>> contexts, queries;
  for (int i = 0; i < kRequests; ++i) {
    contexts.push_back(random_ids(300 + 40 * size_t(i), 200 + i));
    queries.push_back(random_ids(3 + size_t(i % 3), 300 + i));
  }
  std::vector<GenerateRequest> requests(kRequests);
  for (int i = 0; i < kRequests; ++i) {
    requests[size_t(i)].context_ids = contexts[size_t(i)];
    requests[size_t(i)].query_ids = queries[size_t(i)];
    requests[size_t(i)].block_size = 256;
    requests[size_t(i)].max_new_tokens = 24;
  }
  ConcurrentClients clients(address, std::move(requests));
  clients.join();
  const auto& got = clients.tokens;
  const auto& errors = clients.errors;
  for (int i = 0; i < kRequests; ++i) {
    CAPTURE(i);
    CHECK(errors[i].empty());
    CHECK(got[i] == star(contexts[i], queries[i], 256, 2, 24).ids);
  }
  // Steps batched (the histogram's sum) outnumber the batches (its count): some ran together.
  double batches = 0, steps = 0, prefills = 0, prefill_tokens = 0;
  for (size_t w = 1; w < mesh->metrics_ports().size(); ++w) {
    const std::string text = http_get(mesh->metrics_ports()[w], "/metrics").body;
    batches += metric_value(text, "starmesh_worker_decode_batch_size_count");
    steps += metric_value(text, "starmesh_worker_decode_batch_size_sum");
    prefills += metric_value(text, "starmesh_worker_batched_prefills_total");
    prefill_tokens += metric_value(text, "starmesh_worker_batched_prefill_tokens_total");
  }
  MESSAGE(steps << " decode steps in " << batches << " batches");
  double tokens_after_first = 0;  // each came from a decode step
  for (const auto& ids : got) tokens_after_first += double(ids.size()) - 1;
  CHECK(steps == tokens_after_first);
  CHECK(steps > batches);
  // Every query (3 to 5 tokens, under the default --batch-prefill of 256) prefilled in the batcher.
  double query_tokens = 0;
  for (const auto& q : queries) query_tokens += double(q.size());
  CHECK(prefills == kRequests);
  CHECK(prefill_tokens == query_tokens);
}
