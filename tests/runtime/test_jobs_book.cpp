// JobsBook: the worker's job table, KV reservations, kept shards and retirement, without CAF
// actors or threads.
#include <doctest/doctest.h>

#include "starmesh/runtime/jobs_book.hpp"

using namespace starmesh;

namespace {

// A job for host `host` of a plan of `context` tokens in blocks of `block`.
std::shared_ptr<Job> job(uint64_t id, int64_t context, int64_t block, int hosts, int host, int64_t local = 0) {
  auto j = std::make_shared<Job>();
  j->id = id;
  j->plan = plan_blocks(context, block, -1, hosts).value();
  j->host = host;
  j->query_host = host + 1 == int(j->plan.hosts.size());
  j->local_capacity = local;
  return j;
}

// A finished phase 1: the job's shard (no KV cache: the book never reads it).
void encoded(Job& j) {
  const HostRange& r = j.plan.hosts[size_t(j.host)];
  j.shard = std::make_shared<const KvShard>(KvShard{r.begin, r.end, {}});
  j.encoded = true;
}

}  // namespace

TEST_CASE("jobs book: a job reserves its shard and local tokens, and refusals name what is wrong") {
  JobsBook book(1000);
  REQUIRE(book.admit(job(1, 800, 400, 2, 1, 50), 0));  // host 1 holds [400, 800) + 50 local
  CHECK(book.pool().used() == 450);
  const Status twice = book.admit(job(1, 800, 400, 2, 1), 0);
  CHECK(twice.code() == ErrorCode::invalid_argument);
  const Status full = book.admit(job(2, 1200, 600, 2, 0), 0);
  CHECK(full.code() == ErrorCode::overloaded);
  CHECK(full.message().find("--capacity") != std::string::npos);
  const Status unknown = book.admit(job(3, 800, 400, 2, 0), 42);
  CHECK(unknown.code() == ErrorCode::not_found);
  CHECK(book.jobs() == 1);
  book.withdraw(1);
  CHECK(book.pool().used() == 0);
  CHECK(book.jobs() == 0);
}

TEST_CASE("jobs book: retiring frees the KV at once, and the record goes when no thread runs for it") {
  JobsBook book(1000);
  REQUIRE(book.admit(job(1, 400, 400, 1, 0, 20), 0));
  auto j = book.retire(1);
  REQUIRE(j);
  CHECK(j->freed);
  CHECK(j->stop.load());
  CHECK(book.pool().used() == 0);
  CHECK(book.jobs() == 0);      // no thread: gone now
  CHECK_FALSE(book.retire(1));  // once

  REQUIRE(book.admit(job(2, 400, 400, 1, 0), 0));
  auto running = book.find(2);
  running->thread = std::thread([] {});  // a thread runs for it
  REQUIRE(book.retire(2));
  CHECK(book.pool().used() == 0);
  CHECK(book.jobs() == 1);  // kept until the thread has ended
  CHECK_FALSE(book.live(2));
  running->thread.join();
  book.thread_ended(2);
  CHECK(book.jobs() == 0);
}

TEST_CASE("jobs book: a kept shard is booked as a context, reused by a later job, and dropped") {
  JobsBook book(1000);
  auto first = job(7, 800, 400, 2, 1, 50);
  first->keep = true;
  REQUIRE(book.admit(first, 0));
  encoded(*first);
  REQUIRE(book.keep(7));
  CHECK(book.holds_context(7));
  CHECK(book.pool().used() == 400);  // the shard; the request's local tokens went
  CHECK(book.jobs() == 0);

  auto question = job(8, 800, 400, 2, 1, 30);
  REQUIRE(book.admit(question, 7));
  CHECK(question->shard == first->shard);  // no phase 1: the kept shard
  CHECK(book.pool().used() == 430);
  const Status other_range = book.admit(job(9, 800, 400, 2, 0), 7);
  CHECK(other_range.code() == ErrorCode::invalid_argument);
  book.retire(8);

  CHECK(book.drop(7) == 1);
  CHECK(book.pool().used() == 0);
  CHECK(book.admit(job(10, 800, 400, 2, 1), 7).code() == ErrorCode::not_found);
}

TEST_CASE("jobs book: keeping without a shard is refused and frees the request, and drop 0 drops every context") {
  JobsBook book(1000);
  REQUIRE(book.admit(job(1, 400, 400, 1, 0), 0));  // not asked to keep
  encoded(*book.find(1));
  const Status refused = book.keep(1);
  CHECK(refused.code() == ErrorCode::invalid_argument);
  CHECK(book.pool().used() == 0);
  CHECK(book.keep(99).code() == ErrorCode::not_found);

  for (uint64_t id : {2, 3}) {
    auto j = job(id, 100, 100, 1, 0);
    j->keep = true;
    REQUIRE(book.admit(j, 0));
    encoded(*j);
    REQUIRE(book.keep(id));
  }
  CHECK(book.pool().used() == 200);
  CHECK(book.drop(0) == 2);
  CHECK(book.pool().used() == 0);
}

TEST_CASE("jobs book in pages: a shard and the local tokens each take whole pages, a kept shard too") {
  JobsBook book(1024, 64);
  REQUIRE(book.admit(job(1, 800, 400, 2, 1, 50), 0));  // [400, 800): 448, and 50 local: 64
  CHECK(book.pool().used() == 448 + 64);
  // 512 free: a shard of 500 takes 512 and fits; one more page does not.
  REQUIRE(book.admit(job(2, 500, 500, 1, 0), 0));
  CHECK(book.pool().free() == 0);
  CHECK(book.admit(job(3, 1, 1, 1, 0), 0).code() == ErrorCode::overloaded);
  // Kept, host 0's shard of 500 stays booked as 512.
  encoded(*book.find(2));
  book.find(2)->keep = true;
  REQUIRE(book.keep(2));
  CHECK(book.pool().used() == 448 + 64 + 512);
  book.retire(1);
  CHECK(book.pool().used() == 512);
}
