// What becomes of a kept context whose worker leaves or is lost (kept_context_policy.hpp).
#include <doctest/doctest.h>

#include <tuple>
#include <vector>

#include "starmesh/runtime/kept_context_policy.hpp"

using namespace starmesh;

namespace {
KeptContextCase kase(WorkerEvent event, int users) {
  KeptContextCase c;
  c.event = event;
  c.has_tokens = true;
  c.users = users;
  c.tokens = 1000;
  c.max_stale_tokens = 4000;
  return c;
}
}  // namespace

TEST_CASE("kept context policy: a lost worker's context is encoded again at once, used or not") {
  CHECK(decide_kept_context(kase(WorkerEvent::lost, 0)) == KeptContextFate::reencode);
  CHECK(decide_kept_context(kase(WorkerEvent::lost, 2)) == KeptContextFate::reencode);
}

TEST_CASE("kept context policy: a leaving worker's context waits for its running questions") {
  CHECK(decide_kept_context(kase(WorkerEvent::leaving, 0)) == KeptContextFate::reencode);
  CHECK(decide_kept_context(kase(WorkerEvent::leaving, 1)) == KeptContextFate::reencode_when_idle);
}

TEST_CASE("kept context policy: dropped as before without tokens, when a drop was asked, or past the bound") {
  using Row = std::tuple<WorkerEvent, int, KeptContextFate, KeptContextFate>;  // event, users, idle, busy
  const std::vector<Row> rows{{WorkerEvent::lost, 1, KeptContextFate::drop, KeptContextFate::drop},
                              {WorkerEvent::leaving, 1, KeptContextFate::drop, KeptContextFate::drop_when_idle}};
  for (const auto& [event, users, idle, busy] : rows) {
    CAPTURE(int(event));
    KeptContextCase none = kase(event, 0);
    none.has_tokens = false;
    CHECK(decide_kept_context(none) == idle);
    none.users = users;
    CHECK(decide_kept_context(none) == busy);

    KeptContextCase asked = kase(event, users);
    asked.drop_asked = true;
    CHECK(decide_kept_context(asked) == busy);

    KeptContextCase full = kase(event, 0);
    full.stale_tokens = 3000;  // exactly at the bound with this one: still kept
    CHECK(decide_kept_context(full) == KeptContextFate::reencode);
    full.stale_tokens = 3001;
    CHECK(decide_kept_context(full) == idle);
  }
}
