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

TEST_CASE("placement books whole pages of each worker, and refuses a worker claiming absurd pages") {
  Membership m;
  auto a = info("a:1", 1024);
  a.kv_page_tokens = 64;
  auto b = info("b:2", 2048);
  b.kv_page_tokens = 128;
  REQUIRE(m.add({}, a));
  REQUIRE(m.add({}, b));
  // 600 context tokens in blocks of 300, 10 local: host 0 on a, the query host on b.
  auto p = m.place(1, ask(600, 10, 300)).value();
  REQUIRE(p.hosts.size() == 2);
  CHECK(p.local_tokens == 10);
  CHECK(p.hosts[0].reserve == 320);        // 300 in pages of 64
  CHECK(p.hosts[1].reserve == 384 + 128);  // 300 in pages of 128, 10 local in one page
  CHECK(m.find(1)->reserved == 320);
  CHECK(m.find(2)->reserved == 512);
  // reserve_exact books pages too (a kept context's shards, an attach's local tokens).
  REQUIRE(m.reserve_exact(9, {{1, 1}, {2, 129}}));
  CHECK(m.find(1)->reserved == 320 + 64);
  CHECK(m.find(2)->reserved == 512 + 256);
  m.release(9);
  m.release(1);
  CHECK(m.find(1)->reserved == 0);
  CHECK(m.find(2)->reserved == 0);

  for (int64_t bad : {int64_t(-1), kMaxPageTokens + 1}) {
    auto c = info("c:3", 1000);
    c.kv_page_tokens = bad;
    auto refused = m.add({}, c);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().code == ErrorCode::invalid_argument);
  }
}
