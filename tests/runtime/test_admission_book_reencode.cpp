// AdmissionBook: a kept context that loses its shards with a worker is encoded again on its
// next question (kept_context_policy.hpp), without CAF (time passed in).
#include <doctest/doctest.h>

#include <algorithm>

#include "runtime/placement_fixtures.hpp"
#include "starmesh/runtime/admission_book.hpp"

using namespace starmesh;
using namespace std::chrono_literals;

namespace {

using Time = AdmissionBook::Time;
const Time t0 = Time{} + 1000s;

std::vector<int32_t> ids(size_t n) {
  std::vector<int32_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = int32_t(i % 97);
  return v;
}

struct Book {
  AdmissionBook book;
  explicit Book(std::vector<int64_t> capacities, AdmissionOptions o = {60s, 8, 10s}) : book("m", o) {
    for (size_t i = 0; i < capacities.size(); ++i)
      REQUIRE(book.members().add({}, test::worker_info("w" + std::to_string(i + 1), capacities[i])));
  }
  int64_t reserved_on(uint32_t id) const {
    auto w = book.members().find(id);
    return w ? w->reserved : -1;
  }
  // Request `id` keeps an 800-token context (blocks of 400: one on each of two workers).
  void keep(uint64_t id, Decisions& d, std::vector<int32_t> tokens = ids(800)) {
    REQUIRE(book.admit(id, test::placement_ask(800, 10, 400), t0, d).kind == Admission::Kind::placed);
    REQUIRE(book.keep(id, t0, d, ContextId::random(), "", std::move(tokens)));
  }
};

const Decisions::Dropped* dropped(const Decisions& d, uint64_t shard_id) {
  auto it = std::find_if(d.dropped.begin(), d.dropped.end(),
                         [&](const Decisions::Dropped& x) { return x.context_id == shard_id; });
  return it == d.dropped.end() ? nullptr : &*it;
}

}  // namespace

TEST_CASE("reencode: a lost worker's kept context keeps its name, frees its KV, and its next question encodes it") {
  Book b({1000, 1000, 1000});
  Decisions d;
  b.keep(1, d);
  CHECK(b.reserved_on(1) + b.reserved_on(2) + b.reserved_on(3) == 800);
  REQUIRE(b.book.members().remove(uint32_t(1)));
  Decisions lost;
  b.book.worker_lost(1, t0 + 1s, lost);
  const auto* gone = dropped(lost, 1);
  REQUIRE(gone);
  CHECK(gone->reencode);
  CHECK(gone->why == Decisions::Why::worker_lost);
  CHECK(b.book.is_kept(1));
  CHECK(b.book.needs_encoding(1));
  CHECK(b.reserved_on(2) + b.reserved_on(3) == 0);  // the survivors' shards went too
  CHECK(b.book.load().kept_tokens == 0);

  auto q = b.book.attach(2, 1, 30, t0 + 2s, d);  // the whole context again, and the question's tokens
  REQUIRE(q.kind == Admission::Kind::placed);
  CHECK(q.placement->kept_context == 0);
  CHECK(q.placement->context_ids == ids(800));
  CHECK(q.placement->plan.block_size == 400);
  CHECK(q.placement->plan.context_tokens == 800);
  CHECK(b.reserved_on(2) + b.reserved_on(3) == 830);
  CHECK(b.book.load().running == 1);

  Decisions kept;  // it ends keeping the new shards: they are the context's now, under the question's id
  CHECK(b.book.keep(2, t0 + 3s, kept));
  CHECK_FALSE(b.book.needs_encoding(1));
  CHECK(b.reserved_on(2) + b.reserved_on(3) == 800);
  CHECK(b.book.context_users(1) == 0);
  auto next = b.book.attach(3, 1, 20, t0 + 4s, d);  // now a plain question over the new shards
  REQUIRE(next.kind == Admission::Kind::placed);
  CHECK(next.placement->kept_context == 2);
  CHECK(next.placement->context_ids.empty());
  b.book.release(3, t0 + 5s, d);

  Decisions asked;  // drop still works, and tells the workers the shards' id
  b.book.drop(1, t0 + 6s, asked);
  REQUIRE(dropped(asked, 2));
  CHECK_FALSE(dropped(asked, 2)->reencode);
  CHECK_FALSE(b.book.is_kept(1));
  CHECK(b.reserved_on(2) + b.reserved_on(3) == 0);
}

TEST_CASE("reencode: a leaving worker's busy context waits for its question, then is encoded again") {
  Book b({1000, 1000, 1000});
  Decisions d;
  b.keep(1, d);
  REQUIRE(b.book.attach(2, 1, 10, t0, d).kind == Admission::Kind::placed);  // runs on the old shards
  REQUIRE(b.book.members().drain(uint32_t(1)));
  Decisions leaving;
  b.book.worker_leaving(1, t0 + 1s, leaving);
  CHECK(leaving.dropped.empty());  // the running question still reads them
  CHECK(b.book.needs_encoding(1));
  auto waits = b.book.attach(3, 1, 10, t0 + 2s, d);  // a new question waits for the old one
  CHECK(waits.kind == Admission::Kind::queued);
  Decisions ended;
  b.book.release(2, t0 + 3s, ended);
  REQUIRE(dropped(ended, 1));
  CHECK(dropped(ended, 1)->reencode);
  REQUIRE(ended.answers.size() == 1);  // the waiting question is placed, to encode it again
  CHECK(ended.answers[0].id == 3);
  REQUIRE(ended.answers[0].placement);
  CHECK(ended.answers[0].placement->context_ids.size() == 800);
  for (const PlacedHost& h : ended.answers[0].placement->hosts) CHECK(h.worker_id != 1);
}

TEST_CASE("reencode: when the workers left cannot hold it, the question is refused as unavailable") {
  Book b({1000, 1000});
  Decisions d;
  b.keep(1, d);
  REQUIRE(b.book.members().remove(uint32_t(2)));
  b.book.worker_lost(2, t0, d);
  REQUIRE(b.book.needs_encoding(1));
  auto q = b.book.attach(2, 1, 300, t0 + 1s, d);  // 800 + 300 on one worker of 1000
  REQUIRE(q.kind == Admission::Kind::refused);
  CHECK(q.error.code == ErrorCode::unavailable);
  CHECK(b.book.context_users(1) == 0);
  CHECK(b.book.is_kept(1));  // still there: a bigger mesh may take it
  Decisions joined;
  REQUIRE(b.book.members().add({}, test::worker_info("w3", 1000)));
  b.book.capacity_changed(t0 + 2s, joined);
  CHECK(b.book.attach(3, 1, 300, t0 + 3s, d).kind == Admission::Kind::placed);
}

TEST_CASE("reencode: two questions encode it at once: the first keeps its shards, the second's go") {
  Book b({1000, 1000, 1000, 1000});
  Decisions d;
  b.keep(1, d);
  REQUIRE(b.book.members().remove(uint32_t(1)));
  b.book.worker_lost(1, t0, d);
  REQUIRE(b.book.attach(2, 1, 10, t0 + 1s, d).kind == Admission::Kind::placed);
  REQUIRE(b.book.attach(3, 1, 10, t0 + 1s, d).kind == Admission::Kind::placed);
  CHECK(b.book.keep(2, t0 + 2s, d));
  Decisions second;
  CHECK_FALSE(b.book.keep(3, t0 + 3s, second));
  REQUIRE(dropped(second, 3));
  CHECK(dropped(second, 3)->why == Decisions::Why::superseded);
  CHECK(b.book.load().kept_tokens == 800);  // one copy booked
  CHECK(b.book.context_users(1) == 0);
}

TEST_CASE("reencode: a question that fails leaves it to the next, and a drop meanwhile wins over its keep") {
  Book b({1000, 1000, 1000});
  Decisions d;
  b.keep(1, d);
  REQUIRE(b.book.members().remove(uint32_t(1)));
  b.book.worker_lost(1, t0, d);
  REQUIRE(b.book.attach(2, 1, 10, t0 + 1s, d).kind == Admission::Kind::placed);
  b.book.release(2, t0 + 2s, d);  // failed: its shards are freed by its driver
  CHECK(b.book.needs_encoding(1));
  CHECK(b.reserved_on(2) + b.reserved_on(3) == 0);
  REQUIRE(b.book.attach(3, 1, 10, t0 + 3s, d).kind == Admission::Kind::placed);
  Decisions asked;
  b.book.drop(1, t0 + 4s, asked);  // waits for question 3
  CHECK(b.book.is_kept(1));
  Decisions ended;
  CHECK_FALSE(b.book.keep(3, t0 + 5s, ended));
  REQUIRE(dropped(ended, 3));  // its new shards go
  CHECK_FALSE(b.book.is_kept(1));
  CHECK(b.reserved_on(2) + b.reserved_on(3) == 0);
}

TEST_CASE("reencode: without its tokens, or past the router's bound, a lost worker's context is dropped") {
  Book b({1000, 1000}, {60s, 8, 10s, 800});  // room for the ids of two 400-token contexts
  Decisions d;
  for (uint64_t id = 1; id <= 4; ++id) {  // 400 tokens each, a block on each worker
    auto a = b.book.admit(id, test::placement_ask(400, 10, 200), t0, d);
    REQUIRE(a.kind == Admission::Kind::placed);
    REQUIRE(a.placement->hosts.size() == 2);
    REQUIRE(b.book.keep(id, t0, d, ContextId::random(), "", id == 1 ? std::vector<int32_t>{} : ids(400)));
  }
  REQUIRE(b.book.members().remove(uint32_t(1)));
  Decisions lost;
  b.book.worker_lost(1, t0 + 1s, lost);
  CHECK_FALSE(b.book.is_kept(1));  // no ids
  CHECK(b.book.needs_encoding(2));
  CHECK(b.book.needs_encoding(3));
  CHECK_FALSE(b.book.is_kept(4));  // its ids would pass the bound
  REQUIRE(dropped(lost, 4));
  CHECK_FALSE(dropped(lost, 4)->reencode);
  CHECK(b.reserved_on(2) == 0);
}

TEST_CASE("removal cost inputs: a worker's kept contexts whole, its running requests and their KV") {
  Book b({1000, 1000});
  Decisions d;
  b.keep(1, d);  // 800 tokens, a shard of 400 on each worker
  REQUIRE(b.book.admit(2, test::placement_ask(200, 10, 200, 1), t0, d).kind == Admission::Kind::placed);
  const WorkerLoad w1 = b.book.load_on(1), w2 = b.book.load_on(2);
  CHECK(w1.kept_context_tokens == 800);  // the whole context, not the shard
  CHECK(w2.kept_context_tokens == 800);
  CHECK(w1.running_requests + w2.running_requests == 1);
  CHECK(w1.reserved_tokens + w2.reserved_tokens == 210);                    // the request's, not the kept shards
  REQUIRE(b.book.attach(3, 1, 20, t0, d).kind == Admission::Kind::placed);  // a question reads both shards
  CHECK(b.book.load_on(1).running_requests + b.book.load_on(2).running_requests == 3);
  REQUIRE(b.book.members().drain(uint32_t(1)));
  CHECK(b.book.load_on(1).draining);
  CHECK(b.book.load_on(7).kept_context_tokens == 0);  // no such worker: nothing
}
