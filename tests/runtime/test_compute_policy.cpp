// ComputePolicy (who gets a worker's device next) and DeviceArbiter (the policy over threads).
#include <doctest/doctest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "starmesh/runtime/device_arbiter.hpp"

using namespace starmesh;

namespace {
std::vector<uint64_t> drain(ComputePolicy& p) {
  std::vector<uint64_t> order;
  while (auto t = p.next()) order.push_back(*t);
  return order;
}
}  // namespace

TEST_CASE("latency work goes first, oldest first, and nobody waits is nothing to grant") {
  ComputePolicy p(4);
  CHECK_FALSE(p.next());
  p.wait(1, WorkKind::decode, 10);
  p.wait(2, WorkKind::shard_step, 11);
  p.wait(3, WorkKind::decode, 12);
  CHECK(drain(p) == std::vector<uint64_t>{1, 2, 3});
  CHECK(p.waiting() == 0);
}

TEST_CASE("phase-1 work waits behind latency work, but never more than `interleave` grants in a row") {
  ComputePolicy p(2);
  p.wait(1, WorkKind::phase1, 7);
  for (uint64_t t = 10; t < 15; ++t) p.wait(t, WorkKind::decode, t);
  // Two decode grants, then the block, then the rest of the decode work.
  CHECK(drain(p) == std::vector<uint64_t>{10, 11, 1, 12, 13, 14});
  // A steady stream of decode work: phase 1 still gets every third grant.
  for (uint64_t t = 100; t < 103; ++t) p.wait(t, WorkKind::phase1, 8);
  std::vector<uint64_t> order;
  uint64_t next_decode = 200;
  for (int i = 0; i < 9; ++i) {
    p.wait(next_decode++, WorkKind::decode, 1);
    order.push_back(*p.next());
  }
  CHECK(order == std::vector<uint64_t>{200, 201, 100, 202, 203, 101, 204, 205, 102});
}

TEST_CASE("phase-1 work with nothing else waiting runs at once, and an idle queue owes it nothing") {
  ComputePolicy p(3);
  p.wait(1, WorkKind::phase1, 5);
  CHECK(p.next() == uint64_t(1));
  // Decode ran alone for a while (no phase 1 waited): a block that arrives now waits only for
  // the decode work already queued ahead in this round, not for a debt.
  for (uint64_t t = 10; t < 20; ++t) {
    p.wait(t, WorkKind::decode, 1);
    CHECK(p.next() == t);
  }
  p.wait(2, WorkKind::phase1, 5);
  p.wait(30, WorkKind::decode, 1);
  CHECK(p.next() == uint64_t(30));  // latency first...
  p.wait(31, WorkKind::decode, 1);
  p.wait(32, WorkKind::decode, 1);
  p.wait(33, WorkKind::decode, 1);
  CHECK(drain(p) == std::vector<uint64_t>{31, 32, 2, 33});  // ...for at most 3 grants
}

TEST_CASE("phase-1 work takes turns between requests, each request's blocks in order") {
  ComputePolicy p(1);
  // Request 9 queues four blocks before requests 3 and 5 queue one each.
  for (uint64_t t = 1; t <= 4; ++t) p.wait(t, WorkKind::phase1, 9);
  p.wait(5, WorkKind::phase1, 3);
  p.wait(6, WorkKind::phase1, 5);
  p.wait(7, WorkKind::phase1, 3);
  // Round robin by request id from the lowest: 3, 5, 9, 3, 9, 9, 9.
  CHECK(drain(p) == std::vector<uint64_t>{5, 6, 1, 7, 2, 3, 4});
}

TEST_CASE("phase-1 work takes turns between tenants first: one tenant's burst does not starve another's") {
  ComputePolicy p(1);
  // Tenant 70 queues 8 requests of 2 blocks each; then tenant 20 queues one request of 2.
  uint64_t ticket = 1;
  for (uint64_t r = 1; r <= 8; ++r)
    for (int b = 0; b < 2; ++b) p.wait(ticket++, WorkKind::phase1, r, 70);
  p.wait(100, WorkKind::phase1, 50, 20);
  p.wait(101, WorkKind::phase1, 50, 20);
  const auto order = drain(p);
  // Tenant 20 (lower tag) goes first, and then every other grant is its until it is done:
  // tenant 70's 16 blocks do not delay it, while tenant 70's own requests still take turns.
  REQUIRE(order.size() == 18);
  CHECK(order[0] == 100);
  CHECK(order[2] == 101);
  // Tenant 70's grants: requests 1, 2, 3, ... one block each before any gets a second.
  std::vector<uint64_t> seventy;
  for (uint64_t t : order)
    if (t < 100) seventy.push_back(t);
  CHECK(seventy == std::vector<uint64_t>{1, 3, 5, 7, 9, 11, 13, 15, 2, 4, 6, 8, 10, 12, 14, 16});

  // A tenant arriving later gets the next phase-1 grant after the one running, not after the
  // burst: tenant 70 queues again, tenant 90 comes in after one grant.
  ComputePolicy q(1);
  for (uint64_t t = 1; t <= 6; ++t) q.wait(t, WorkKind::phase1, t, 70);
  CHECK(q.next() == std::optional<uint64_t>(1));
  q.wait(50, WorkKind::phase1, 40, 90);
  CHECK(q.next() == std::optional<uint64_t>(50));
  CHECK(q.next() == std::optional<uint64_t>(2));
}

TEST_CASE("the arbiter gives the device to one thread at a time, in the policy's order") {
  DeviceArbiter arbiter(1);
  arbiter.acquire(WorkKind::decode, 1);  // held: everybody else queues
  std::atomic<int> inside{0}, most{0};
  std::mutex order_mu;
  std::vector<int> order;
  std::vector<std::thread> threads;
  const auto run = [&](WorkKind kind, int tag) {
    arbiter.acquire(kind, uint64_t(tag));
    const int now = ++inside;
    most = std::max(most.load(), now);
    {
      std::lock_guard lock(order_mu);
      order.push_back(tag);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    --inside;
    arbiter.release();
  };
  threads.emplace_back(run, WorkKind::phase1, 100);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // queued before the decode work below
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back(run, WorkKind::decode, i);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  arbiter.release();
  for (auto& t : threads) t.join();
  CHECK(most == 1);
  // interleave 1: one decode grant, then the waiting block, then the rest.
  CHECK(order == std::vector<int>{0, 100, 1, 2});
  CHECK(arbiter.grants(WorkKind::decode) == 4);
  CHECK(arbiter.grants(WorkKind::phase1) == 1);
}

TEST_CASE("priorities order a tenant's own phase-1 work, never another tenant's") {
  ComputePolicy p(1);
  // Tenant 70: two low requests (3 blocks each) queue first, then a high one (2 blocks).
  p.wait(1, WorkKind::phase1, 1, 70, Priority::low);
  p.wait(2, WorkKind::phase1, 1, 70, Priority::low);
  p.wait(3, WorkKind::phase1, 1, 70, Priority::low);
  p.wait(4, WorkKind::phase1, 2, 70, Priority::low);
  p.wait(10, WorkKind::phase1, 5, 70, Priority::high);
  p.wait(11, WorkKind::phase1, 5, 70, Priority::high);
  // Tenant 90 asks normal work: it keeps its turns whatever tenant 70's priorities.
  p.wait(20, WorkKind::phase1, 9, 90);
  p.wait(21, WorkKind::phase1, 9, 90);
  // 70's high request first (its blocks in order), 90 every other grant, then 70's low ones
  // taking turns.
  CHECK(drain(p) == std::vector<uint64_t>{10, 20, 11, 21, 1, 4, 2, 3});
}
