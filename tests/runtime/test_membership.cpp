// Membership: registration checks, placement on workers with free KV, refusals with numbers.
#include <doctest/doctest.h>

#include "runtime/placement_fixtures.hpp"
#include "starmesh/runtime/membership.hpp"

using namespace starmesh;

namespace {
WorkerInfo info(const std::string& endpoint, int64_t capacity) { return test::worker_info(endpoint, capacity); }
PlacementAsk ask(int64_t context, int64_t local, int64_t block, int max_hosts = 0) {
  return test::placement_ask(context, local, block, max_hosts);
}
}  // namespace

TEST_CASE("membership refuses a worker with another model, data plane, or no capacity") {
  Membership m("m");
  CHECK(m.add({}, info("a:1", 100)).value() == 1);
  auto other = info("b:2", 100);
  other.model = "x";
  auto refused = m.add({}, other);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().message.find("--model") != std::string::npos);
  other = info("b:2", 100);
  other.data_plane = "ucx-tcp";
  CHECK(m.add({}, other).error().message.find("--transport") != std::string::npos);
  CHECK(m.add({}, info("c:3", 0)).error().message.find("--capacity") != std::string::npos);
  CHECK(m.size() == 1);
}

TEST_CASE("placement: contiguous hosts, the query host on the worker with the most free KV, reservations") {
  Membership m;
  m.add({}, info("a:1", 1000));
  m.add({}, info("b:2", 3000));
  m.add({}, info("c:3", 1000));
  auto p = m.place(7, ask(1024, 64, 256)).value();
  REQUIRE(p.hosts.size() == 3);
  CHECK(p.plan.hosts == 3);
  // Blocks 0-1 on worker 1, 2 on worker 3, 3 (the query host) on worker 2 (most free).
  CHECK(p.hosts[0].worker_id == 1);
  CHECK(p.hosts[1].worker_id == 3);
  CHECK(p.hosts[2].worker_id == 2);
  CHECK(p.hosts[0].begin == 0);
  CHECK(p.hosts[2].end == 1024);
  CHECK(p.hosts[2].reserve == (p.hosts[2].end - p.hosts[2].begin) + 64);
  CHECK(m.find(2)->reserved == p.hosts[2].reserve);
  CHECK_FALSE(m.place(7, ask(10, 1, 4)));  // already placed
  m.release(7);
  for (const auto& w : m.view()) CHECK(w.reserved == 0);
}

TEST_CASE("placement uses fewer hosts when a small worker cannot hold its share, and max_hosts") {
  Membership m;
  m.add({}, info("a:1", 2000));
  m.add({}, info("b:2", 100));
  auto p = m.place(1, ask(1024, 16, 128)).value();
  CHECK(p.hosts.size() == 1);
  CHECK(p.hosts[0].worker_id == 1);
  m.release(1);
  Membership n;
  for (int i = 0; i < 4; ++i) n.add({}, info("w:" + std::to_string(i), 4096));
  CHECK(n.place(2, ask(1024, 16, 128, 2)).value().hosts.size() == 2);
}

TEST_CASE("placement refuses with the numbers when the workers are full, and when nobody registered") {
  Membership empty;
  auto none = empty.place(1, ask(100, 10, 64));
  REQUIRE_FALSE(none);
  CHECK(none.error().message.find("no worker has registered") != std::string::npos);
  Membership m;
  m.add({}, info("a:1", 300));
  m.add({}, info("b:2", 300));
  auto refused = m.place(1, ask(1000, 32, 128));
  REQUIRE_FALSE(refused);
  const std::string& why = refused.error().message;
  CAPTURE(why);
  CHECK(why.find("not enough free KV capacity") != std::string::npos);
  CHECK(why.find("1000 context tokens") != std::string::npos);
  CHECK(why.find("600 free") != std::string::npos);
  CHECK(why.find("worker 2 at b:2: 300") != std::string::npos);
  // Reservations count: a second request does not fit where the first one sits.
  REQUIRE(m.place(2, ask(500, 32, 128)));
  CHECK_FALSE(m.place(3, ask(200, 32, 128)));
  m.release(2);
  CHECK(m.place(3, ask(200, 32, 128)));
}
