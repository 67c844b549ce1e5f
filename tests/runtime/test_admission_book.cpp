// AdmissionBook: the router's queue and kept-context rules, without CAF (time passed in).
#include <doctest/doctest.h>

#include <algorithm>

#include "runtime/placement_fixtures.hpp"
#include "starmesh/runtime/admission_book.hpp"

using namespace starmesh;
using namespace std::chrono_literals;

namespace {

using Time = AdmissionBook::Time;
const Time t0 = Time{} + 1000s;

WorkerInfo worker(const std::string& endpoint, int64_t capacity) { return test::worker_info(endpoint, capacity); }
PlacementAsk ask(int64_t context, int64_t local, int64_t block, int max_hosts = 0) {
  return test::placement_ask(context, local, block, max_hosts);
}

std::vector<uint64_t> answered(const Decisions& d, bool placed) {
  std::vector<uint64_t> ids;
  for (const auto& a : d.answers)
    if (bool(a.placement) == placed) ids.push_back(a.id);
  return ids;
}

struct Book {
  AdmissionBook book;
  explicit Book(std::vector<int64_t> capacities, AdmissionOptions o = {60s, 2, 10s}) : book("m", o) {
    for (size_t i = 0; i < capacities.size(); ++i)
      REQUIRE(book.members().add({}, worker("w" + std::to_string(i + 1), capacities[i])));
  }
  // Where room for one request at a time is: releases `running`, then each request placed in
  // its stead, `n` times; returns the order they were placed in.
  std::vector<uint64_t> serve_one_at_a_time(uint64_t running, int n) {
    std::vector<uint64_t> order;
    for (int i = 0; i < n; ++i) {
      Decisions freed;
      book.release(running, t0 + 20s + std::chrono::seconds(i), freed);
      const auto placed = answered(freed, true);
      REQUIRE(placed.size() == 1);
      running = placed[0];
      order.push_back(running);
    }
    return order;
  }
  int64_t reserved() const {
    int64_t r = 0;
    for (const WorkerView& w : book.members().view()) r += w.reserved;
    return r;
  }
};

std::vector<uint64_t> dropped(const Decisions& d, Decisions::Why why) {
  std::vector<uint64_t> ids;
  for (const auto& x : d.dropped)
    if (x.why == why) ids.push_back(x.context_id);
  return ids;
}

bool has_timer(const Decisions& d, TimerKind kind, uint64_t id, std::chrono::milliseconds after) {
  return std::any_of(d.timers.begin(), d.timers.end(),
                     [&](const TimerOrder& t) { return t.kind == kind && t.id == id && t.after == after; });
}

}  // namespace

TEST_CASE("admission: placed now, queued first come first served, refused when full or when it can never fit") {
  Book b({1000, 1000});
  Decisions d;
  auto first = b.book.admit(1, ask(1500, 100, 500), t0, d);
  REQUIRE(first.kind == Admission::Kind::placed);
  CHECK(first.placement->hosts.size() == 2);
  CHECK(b.reserved() == 1600);

  auto second = b.book.admit(2, ask(1000, 100, 500), t0 + 1s, d);  // fits an idle mesh, not now
  CHECK(second.kind == Admission::Kind::queued);
  CHECK(has_timer(d, TimerKind::queue_deadline, 2, 60s));
  auto small = b.book.admit(3, ask(100, 10, 100), t0 + 2s, d);  // fits now, but nobody jumps the queue
  CHECK(small.kind == Admission::Kind::queued);
  CHECK(b.book.queued() == 2);

  auto full = b.book.admit(4, ask(100, 10, 100), t0 + 3s, d);
  REQUIRE(full.kind == Admission::Kind::refused);
  CHECK(full.error.code == ErrorCode::overloaded);
  CHECK(full.error.message.find("2 requests already wait") != std::string::npos);
  auto huge = b.book.admit(5, ask(5000, 10, 500), t0 + 3s, d);
  REQUIRE(huge.kind == Admission::Kind::refused);
  CHECK(huge.error.code == ErrorCode::refused);
  CHECK(huge.error.message.find("not enough free KV capacity") != std::string::npos);
  CHECK(d.answers.empty());

  Decisions freed;
  b.book.release(1, t0 + 5s, freed);  // both waiting requests fit now: in arrival order
  CHECK(answered(freed, true) == std::vector<uint64_t>{2, 3});
  CHECK(freed.answers[0].waited == 4s);
  CHECK(b.book.queued() == 0);
  CHECK(b.reserved() == 1100 + 110);
}

TEST_CASE("admission: the queue takes turns between tenants, each first come first served") {
  // One request at a time fits: tenant "a" queues a burst of 5, then "b" one and "c" one.
  AdmissionOptions o{60s, 16, 10s};
  Book b({1000}, o);
  Decisions d;
  auto tenant_ask = [](const std::string& tenant) {
    PlacementAsk a = ask(800, 100, 500);
    a.tenant = tenant;
    return a;
  };
  REQUIRE(b.book.admit(1, tenant_ask("a"), t0, d).kind == Admission::Kind::placed);
  for (uint64_t id = 2; id <= 6; ++id)
    REQUIRE(b.book.admit(id, tenant_ask("a"), t0 + std::chrono::seconds(id), d).kind == Admission::Kind::queued);
  REQUIRE(b.book.admit(7, tenant_ask("b"), t0 + 10s, d).kind == Admission::Kind::queued);
  REQUIRE(b.book.admit(8, tenant_ask("c"), t0 + 11s, d).kind == Admission::Kind::queued);
  // Each release makes room for one: a served last, so b, then c, then a again.
  CHECK(b.serve_one_at_a_time(1, 7) == std::vector<uint64_t>{7, 8, 2, 3, 4, 5, 6});
}

TEST_CASE("admission: a tenant's priorities reorder its own queued requests, not the turns between tenants") {
  AdmissionOptions o{60s, 16, 10s};
  Book b({1000}, o);
  Decisions d;
  auto asking = [](const std::string& tenant, Priority p) {
    PlacementAsk a = ask(800, 100, 500);
    a.tenant = tenant;
    a.priority = p;
    return a;
  };
  REQUIRE(b.book.admit(1, asking("a", Priority::normal), t0, d).kind == Admission::Kind::placed);
  REQUIRE(b.book.admit(2, asking("a", Priority::low), t0 + 1s, d).kind == Admission::Kind::queued);
  REQUIRE(b.book.admit(3, asking("a", Priority::normal), t0 + 2s, d).kind == Admission::Kind::queued);
  REQUIRE(b.book.admit(4, asking("b", Priority::low), t0 + 3s, d).kind == Admission::Kind::queued);
  REQUIRE(b.book.admit(5, asking("a", Priority::high), t0 + 4s, d).kind == Admission::Kind::queued);
  REQUIRE(b.book.admit(6, asking("a", Priority::high), t0 + 5s, d).kind == Admission::Kind::queued);
  // a served last, so b's (low) request goes first all the same; then a's by priority, the
  // older first among equals.
  CHECK(b.serve_one_at_a_time(1, 5) == std::vector<uint64_t>{4, 5, 6, 3, 2});
}

TEST_CASE("admission: with the queue off, what does not fit now is overloaded, and a bad plan is invalid") {
  Book b({1000}, {0s, 8, 10s});
  Decisions d;
  REQUIRE(b.book.admit(1, ask(900, 10, 300), t0, d).kind == Admission::Kind::placed);
  auto busy = b.book.admit(2, ask(500, 10, 250), t0, d);
  REQUIRE(busy.kind == Admission::Kind::refused);
  CHECK(busy.error.code == ErrorCode::overloaded);
  auto bad = b.book.admit(3, ask(500, 10, 0), t0, d);
  REQUIRE(bad.kind == Admission::Kind::refused);
  CHECK(bad.error.code == ErrorCode::invalid_argument);
  Book none({});
  auto nobody = none.book.admit(1, ask(10, 1, 10), t0, d);
  REQUIRE(nobody.kind == Admission::Kind::refused);
  CHECK(nobody.error.code == ErrorCode::unavailable);
}

TEST_CASE("admission: at its deadline a request gives up with a timeout, or is placed if it fits by then") {
  Book b({1000, 1000});
  Decisions d;
  REQUIRE(b.book.admit(1, ask(1500, 100, 500), t0, d).kind == Admission::Kind::placed);     // 400 free
  REQUIRE(b.book.admit(2, ask(1000, 100, 500), t0, d).kind == Admission::Kind::queued);     // needs 1100
  REQUIRE(b.book.admit(3, ask(100, 10, 100), t0 + 1s, d).kind == Admission::Kind::queued);  // needs 110

  Decisions late;
  b.book.queue_deadline(3, t0 + 61s, late);  // behind a head that does not fit, but fits itself
  CHECK(answered(late, true) == std::vector<uint64_t>{3});
  Decisions gave_up;
  b.book.queue_deadline(2, t0 + 60s, gave_up);
  REQUIRE(answered(gave_up, false) == std::vector<uint64_t>{2});
  const Error& e = gave_up.answers[0].placement.error();
  CHECK(e.code == ErrorCode::timeout);
  CHECK(e.message.find("within 60 s in the queue (0 requests ahead of it)") != std::string::npos);
  CHECK(b.book.queued() == 0);
  Decisions again;
  b.book.queue_deadline(2, t0 + 61s, again);  // already answered: nothing
  CHECK(again.answers.empty());
}

TEST_CASE("kept contexts: kept on keep, dropped after the TTL unused, not while a question uses them") {
  Book b({1000});
  Decisions d;
  REQUIRE(b.book.admit(1, ask(400, 20, 400), t0, d).kind == Admission::Kind::placed);
  Decisions kept;
  REQUIRE(b.book.keep(1, t0 + 1s, kept));
  CHECK(has_timer(kept, TimerKind::context_ttl, 1, 10s));
  CHECK(b.book.is_kept(1));
  CHECK(b.reserved() == 400);  // the shard only: the query tokens went with the request

  Decisions early;
  b.book.context_ttl(1, t0 + 5s, early);
  CHECK(early.dropped.empty());

  auto q = b.book.attach(2, 1, 30, t0 + 6s, d);  // a question: its query tokens on the query host
  REQUIRE(q.kind == Admission::Kind::placed);
  CHECK(q.placement->hosts.back().reserve == 430);
  CHECK(b.book.context_users(1) == 1);
  Decisions busy;
  b.book.context_ttl(1, t0 + 20s, busy);  // in use: stays
  CHECK(busy.dropped.empty());
  Decisions done;
  b.book.release(2, t0 + 21s, done);  // idle again: its TTL starts over
  CHECK(has_timer(done, TimerKind::context_ttl, 1, 10s));
  CHECK(b.book.context_users(1) == 0);
  Decisions not_yet, expired;
  b.book.context_ttl(1, t0 + 25s, not_yet);
  CHECK(not_yet.dropped.empty());
  b.book.context_ttl(1, t0 + 31s, expired);
  CHECK(dropped(expired, Decisions::Why::ttl) == std::vector<uint64_t>{1});
  CHECK_FALSE(b.book.is_kept(1));
  CHECK(b.reserved() == 0);
  auto gone = b.book.attach(3, 1, 30, t0 + 32s, d);
  REQUIRE(gone.kind == Admission::Kind::refused);
  CHECK(gone.error.code == ErrorCode::not_found);
}

TEST_CASE("kept contexts: the least recently used idle one makes room, and one in use never does") {
  Book b({1000}, {60s, 8, 0s});  // TTL off
  Decisions d;
  REQUIRE(b.book.admit(1, ask(400, 10, 400), t0, d).kind == Admission::Kind::placed);
  REQUIRE(b.book.keep(1, t0, d));
  REQUIRE(b.book.admit(2, ask(400, 10, 400), t0, d).kind == Admission::Kind::placed);
  REQUIRE(b.book.keep(2, t0 + 1s, d));
  CHECK(d.timers.empty());  // no TTL

  Decisions evict;
  auto third = b.book.admit(3, ask(500, 10, 500), t0 + 2s, evict);  // needs 510 of the 200 free
  REQUIRE(third.kind == Admission::Kind::placed);
  CHECK(dropped(evict, Decisions::Why::evicted) == std::vector<uint64_t>{1});  // the older one
  CHECK(b.book.is_kept(2));

  REQUIRE(b.book.attach(4, 2, 20, t0 + 3s, d).kind == Admission::Kind::placed);  // context 2 in use
  Decisions wait;
  auto fourth = b.book.admit(5, ask(500, 10, 500), t0 + 4s, wait);
  CHECK(fourth.kind == Admission::Kind::queued);  // nothing idle to drop: it waits
  CHECK(wait.dropped.empty());
  CHECK(b.book.is_kept(2));
}

TEST_CASE("kept contexts: a drop waits for the questions using it, and a dropped one takes no new question") {
  Book b({1000});
  Decisions d;
  REQUIRE(b.book.admit(1, ask(400, 10, 400), t0, d).kind == Admission::Kind::placed);
  REQUIRE(b.book.keep(1, t0, d));
  REQUIRE(b.book.attach(2, 1, 10, t0, d).kind == Admission::Kind::placed);
  Decisions asked;
  b.book.drop(1, t0 + 1s, asked);
  CHECK(asked.dropped.empty());
  auto late = b.book.attach(3, 1, 10, t0 + 2s, d);
  REQUIRE(late.kind == Admission::Kind::refused);
  CHECK(late.error.code == ErrorCode::not_found);
  Decisions ended;
  b.book.release(2, t0 + 3s, ended);
  CHECK(dropped(ended, Decisions::Why::requested) == std::vector<uint64_t>{1});
  CHECK(b.reserved() == 0);
}

TEST_CASE("workers: a leaving worker's idle contexts go at once, busy ones when idle, and a lost worker's at once") {
  Book b({1000, 1000});
  Decisions d;
  REQUIRE(b.book.admit(1, ask(800, 10, 400), t0, d).kind == Admission::Kind::placed);  // on both workers
  REQUIRE(b.book.keep(1, t0, d));
  REQUIRE(b.book.admit(2, ask(800, 10, 400), t0, d).kind == Admission::Kind::placed);
  REQUIRE(b.book.keep(2, t0, d));
  REQUIRE(b.book.attach(3, 2, 10, t0, d).kind == Admission::Kind::placed);

  Decisions leaving;
  REQUIRE(b.book.members().drain(uint32_t(1)));
  b.book.worker_leaving(1, t0 + 1s, leaving);
  CHECK(dropped(leaving, Decisions::Why::worker_left) == std::vector<uint64_t>{1});
  CHECK(b.book.is_kept(2));  // a question uses it
  Decisions ended;
  b.book.release(3, t0 + 2s, ended);
  CHECK(ended.dropped.size() == 1);
  CHECK_FALSE(b.book.is_kept(2));

  // Lost: a kept context on the lost worker goes at once, even in use; a queued request that
  // no idle mesh can hold any more is refused.
  Book c({1000, 1000});
  Decisions e;
  REQUIRE(c.book.admit(1, ask(800, 10, 400), t0, e).kind == Admission::Kind::placed);
  REQUIRE(c.book.keep(1, t0, e));
  REQUIRE(c.book.attach(2, 1, 10, t0, e).kind == Admission::Kind::placed);
  REQUIRE(c.book.admit(3, ask(1500, 10, 500), t0, e).kind == Admission::Kind::queued);
  REQUIRE(c.book.members().remove(uint32_t(1)));
  Decisions lost;
  c.book.worker_lost(1, t0 + 1s, lost);
  CHECK(dropped(lost, Decisions::Why::worker_lost) == std::vector<uint64_t>{1});
  REQUIRE(answered(lost, false) == std::vector<uint64_t>{3});
  CHECK(lost.answers[0].placement.code() == ErrorCode::refused);
}

TEST_CASE("kept contexts on a paged worker: booked, attached and counted in its whole pages") {
  AdmissionBook book("m", {60s, 2, 10s});
  WorkerInfo w = worker("w1", 1024);
  w.kv_page_tokens = 64;
  REQUIRE(book.members().add({}, w));
  Decisions d;
  auto placed = book.admit(1, ask(100, 20, 100), t0, d);
  REQUIRE(placed.kind == Admission::Kind::placed);
  CHECK(placed.placement->hosts.back().reserve == 128 + 64);  // the shard's pages, and the query's
  CHECK(placed.placement->local_tokens == 20);
  REQUIRE(book.keep(1, t0 + 1s, d));
  CHECK(book.members().view().front().reserved == 128);
  CHECK(book.load().kept_tokens == 128);
  CHECK(book.load_on(1).reserved_tokens == 0);  // only the kept context's pages are booked there
  auto q = book.attach(2, 1, 30, t0 + 2s, d);
  REQUIRE(q.kind == Admission::Kind::placed);
  CHECK(q.placement->local_tokens == 30);
  CHECK(q.placement->hosts.back().reserve == 128 + 64);
  CHECK(book.members().view().front().reserved == 128 + 64);
  CHECK(book.load_on(1).reserved_tokens == 64);
}
