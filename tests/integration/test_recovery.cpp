// Chaos on a live mesh (real processes on 127.0.0.1): request after request, a worker is
// killed with SIGKILL at a seeded point of phase 1 or phase 2, then started again. Every request must answer with the
// reference tokens: one that loses a worker is planned again on the workers left (recovery_policy.hpp), replaying the
// tokens already streamed. None may hang.
#include <doctest/doctest.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>

#include "process_mesh.hpp"

using namespace starmesh;
using namespace starmesh::test;
using namespace std::chrono_literals;

namespace {

// How many times the router log says a request was planned again, and how many of those had
// tokens out already (lost in phase 2: the next attempt replayed them).
std::pair<size_t, size_t> replans_logged(const std::string& logs) {
  std::ifstream in(logs + "/router.log");
  size_t n = 0, with_tokens = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.find("planning it again") == std::string::npos) continue;
    ++n;
    with_tokens += line.find(", 0 tokens out") == std::string::npos;
  }
  return {n, with_tokens};
}

// Runs `requests` requests on a mesh of 3 workers (worker 3 has the most KV: it is the query
// host). In each, worker `victim(i)` is killed with SIGKILL at a seeded point: half the time
// 0-30 ms after the request is sent (placement or phase 1), half the time when the client has
// its k-th token (phase 2, k in 1..4 of 24-40). The worker is started again after the request.
void chaos(ProcessMesh& m, int requests, uint32_t seed, const std::function<size_t(std::mt19937&)>& victim) {
  // TCP: a process killed mid-send over shm can wedge a survivor's receive FIFO (docs/TRAPS.md).
  m.start("ucx-tcp", 3, {6144, 6144, 12288});
  std::mt19937 rng(seed);
  int answered = 0, in_phase2_kills = 0;
  for (int i = 0; i < requests; ++i) {
    CAPTURE(i);
    const auto ctx = m.random_ids(700 + rng() % 600, 1000 + i), query = m.random_ids(4, 2000 + i);
    const int max_new = 24 + int(rng() % 17);
    const size_t who = victim(rng);
    const bool in_phase2 = rng() % 2 == 1;
    const size_t at_token = 1 + rng() % 4;
    const auto delay = std::chrono::milliseconds(rng() % 31);
    in_phase2_kills += in_phase2;
    auto run = std::make_shared<StreamedRun>();  // shared with the callbacks
    LocalMesh* mesh = m.mesh.get();
    auto kill = [run, mesh, who] {
      if (!run->killed.exchange(true)) (void)mesh->signal_worker(who, SIGKILL);
    };
    GenerateOrder order;
    order.request.context_ids = ctx;
    order.request.query_ids = query;
    order.request.block_size = 256;
    order.request.max_new_tokens = max_new;
    const auto t0 = std::chrono::steady_clock::now();
    m.mesh->client().submit(
        order,
        [run, kill, in_phase2, at_token](const ClientChunk& c) {
          std::lock_guard lock(run->mu);
          run->ids.insert(run->ids.end(), c.ids.begin(), c.ids.end());
          if (in_phase2 && run->ids.size() >= at_token) kill();
          return true;
        },
        [run](Expected<GenerateSummary> s) { run->finished.set_value(std::move(s)); });
    if (!in_phase2) {
      std::this_thread::sleep_for(delay);
      kill();
    }
    auto done = run->finished.get_future();
    const bool ended = done.wait_for(60s) == std::future_status::ready;
    REQUIRE_MESSAGE(ended, "request " << i << " (worker " << who + 1 << " killed "
                                      << (in_phase2 ? "at token " + std::to_string(at_token)
                                                    : "after " + std::to_string(delay.count()) + " ms")
                                      << ") hangs; logs:\n"
                                      << m.mesh->log_tail(60));  // nothing hangs
    auto got = done.get();
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(took < 30);  // nothing waits for a timeout
    if (!got) {
      FAIL_CHECK("request " << i << " (worker " << who + 1 << " killed "
                            << (in_phase2 ? "at token " + std::to_string(at_token)
                                          : "after " + std::to_string(delay.count()) + " ms")
                            << ") failed: " << got.error().message << "\nlogs:\n"
                            << m.mesh->log_tail(30));
    } else {
      ++answered;
      std::lock_guard lock(run->mu);
      CHECK(run->ids == m.star(ctx, query, 256, 3, max_new).ids);
    }
    kill();  // if the request ended first
    const Status restarted = m.mesh->restart_worker(m.sys, who);
    REQUIRE_MESSAGE(restarted, restarted.message());
  }
  const auto [replans, replayed] = replans_logged(m.logs);
  MESSAGE(answered << " of " << requests << " answered with the reference tokens; " << replans
                   << " lost a worker while running and were planned again, " << replayed
                   << " of them with tokens out (replayed); " << in_phase2_kills << " kills were aimed at phase 2");
  CHECK(answered == requests);
  CHECK(replans >= size_t(requests) * 3 / 4);  // the kills land inside the requests
  CHECK(replayed >= size_t(in_phase2_kills) / 2);
}

}  // namespace

TEST_CASE_FIXTURE(
    ProcessMesh,
    "chaos: a shard host killed at a seeded point of phase 1 or 2, 20 requests: all answer as the reference") {
  chaos(*this, 20, 20261204, [](std::mt19937& rng) { return size_t(rng() % 2); });
}

TEST_CASE_FIXTURE(
    ProcessMesh,
    "chaos: the query host killed at a seeded point of phase 1 or 2, 20 requests: all answer as the reference") {
  chaos(*this, 20, 41, [](std::mt19937&) { return size_t(2); });
}

TEST_CASE_FIXTURE(ProcessMesh, "workers added and drained while 20 requests run: every one answers as the reference") {
  start("ucx-shm", 2);
  constexpr int kRequests = 20;
  struct Run {
    std::vector<int32_t> ctx, query, ids;
    int max_new = 0;
    std::promise<Expected<GenerateSummary>> done;
  };
  std::vector<Run> runs(kRequests);
  std::mt19937 rng(7);
  auto submit = [&](int i) {
    Run& r = runs[size_t(i)];
    r.ctx = random_ids(i == 7 ? 1200 : 500 + rng() % 700, 3000 + i);  // 7: 5 blocks, room for 3 hosts
    r.query = random_ids(4, 4000 + i);
    r.max_new = 8 + int(rng() % 8);
    GenerateOrder order;
    order.request.context_ids = r.ctx;
    order.request.query_ids = r.query;
    order.request.block_size = 256;
    order.request.max_new_tokens = r.max_new;
    mesh->client().submit(
        order,
        [&r](const ClientChunk& c) {
          r.ids.insert(r.ids.end(), c.ids.begin(), c.ids.end());
          return true;
        },
        [&r](Expected<GenerateSummary> s) { r.done.set_value(std::move(s)); });
  };
  // A third of the requests, then a worker joins; another third, then worker 1 drains
  // (SIGTERM: it finishes what it runs and leaves); the rest, then another worker joins.
  for (int i = 0; i < 7; ++i) submit(i);
  auto third = mesh->add_worker(sys);
  REQUIRE_MESSAGE(third, (third ? "" : third.error().message));
  for (int i = 7; i < 14; ++i) submit(i);
  // The first request after the join is placed on all three workers (the drain below must not
  // race its placement); the others still run while worker 1 drains.
  auto first_after_join = runs[7].done.get_future().share();
  REQUIRE(first_after_join.wait_for(60s) == std::future_status::ready);
  const auto seven = first_after_join.get();
  REQUIRE_MESSAGE(seven, (seven ? "" : seven.error().message));
  CHECK(seven->hosts == 3);  // the joined worker was used at once
  REQUIRE(mesh->signal_worker(0, SIGTERM));
  for (int i = 14; i < kRequests; ++i) submit(i);
  auto fourth = mesh->add_worker(sys);
  REQUIRE_MESSAGE(fourth, (fourth ? "" : fourth.error().message));
  int answered = 0;
  std::map<int, int> by_hosts;
  for (int i = 0; i < kRequests; ++i) {
    CAPTURE(i);
    Run& r = runs[size_t(i)];
    Expected<GenerateSummary> got = i == 7 ? seven : [&] {
      auto f = r.done.get_future();
      REQUIRE(f.wait_for(60s) == std::future_status::ready);
      return f.get();
    }();
    if (!got) {
      FAIL_CHECK("request " << i << " failed: " << got.error().message);
      continue;
    }
    ++answered;
    ++by_hosts[got->hosts];
    CHECK(r.ids == star(r.ctx, r.query, 256, got->hosts, r.max_new).ids);
  }
  std::string hosts;
  for (auto [h, n] : by_hosts) hosts += " " + std::to_string(n) + " on " + std::to_string(h) + " hosts;";
  MESSAGE(answered << " of " << kRequests << " answered with the reference tokens:" << hosts);
  CHECK(answered == kRequests);
  auto members = mesh->client().members();
  REQUIRE(members);
  CHECK(members->size() == 3);  // the drained one left
}
