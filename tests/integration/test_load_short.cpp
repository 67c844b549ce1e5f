// The load proof, short (bench/RESULTS.md has the 2-minute run): bench/load_bench's 8
// concurrent API clients for 10 s against a router and 4 CPU worker processes. Requests are
// served throughout, and nothing fails but a typed refusal for load (`overloaded`).
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "integration/process_mesh.hpp"

using namespace starmesh;
using test::ProcessMesh;

TEST_CASE_FIXTURE(ProcessMesh, "load: 8 API clients for 10 s on 4 workers, every failure a typed overload refusal") {
  const std::string api = start_with_api(4);
  REQUIRE_FALSE(api.empty());
  const std::string cmd = std::string("timeout 60 ") + STARMESH_LOAD_BENCH + " --connect " + api +
                          " --clients 8 --seconds 10 --context 300 --max-tokens 8 --block 128";
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p);
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  const int status = pclose(p);
  MESSAGE(out);
  auto j = nlohmann::json::parse(out, nullptr, false);
  REQUIRE_FALSE(j.is_discarded());
  CHECK(j["served"].get<int64_t>() >= 8);  // as many served as there are clients, at the least
  for (const auto& [code, n] : j["failures"].items()) CHECK_MESSAGE(code == "overloaded", code << ": " << n);
  CHECK(j["latency_p99_s"].get<double>() >= j["latency_p50_s"].get<double>());
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
