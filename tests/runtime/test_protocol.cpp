// The router's protocol under CAF's deterministic test coordinator: the real router and
// request driver, scripted workers that log what they receive (and answer, refuse, or keep
// silent), and a MeshClient sink. Time only moves when the test says so.
#include <doctest/doctest.h>

#include <caf/scheduler/test_coordinator.hpp>
#include <memory>
#include <string>
#include <vector>

#include "starmesh/runtime/context_worker.hpp"
#include "starmesh/runtime/membership.hpp"
#include "starmesh/runtime/mesh_client.hpp"
#include "starmesh/runtime/mesh_config.hpp"
#include "starmesh/runtime/router.hpp"

using namespace starmesh;
using namespace std::chrono_literals;

namespace {

enum class Script { answer, refuse, silent_encode, silent_phase2, silent_coordinator, until_cancelled };

std::string joined(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += "\n  " + l;
  return s;
}

struct Log {
  std::vector<std::string> lines;
  void add(std::string s) { lines.push_back(std::move(s)); }
};

// A coordinator that streams two tokens, then its report; or nothing at all; or one token,
// then waits for cancel and reports "cancelled".
CoordinatorActor::behavior_type fake_coordinator(CoordinatorActor::pointer self, Phase2Order order, Script script) {
  Phase2Report r;
  r.query_tokens = int64_t(order.query.size());
  if (script == Script::answer) {
    self->send(order.sink, tokens_atom::value, order.request_id, TokenBatch{{65}, {}});
    self->send(order.sink, tokens_atom::value, order.request_id, TokenBatch{{66}, {}});
    r.generated_tokens = 2;
    r.stop_reason = StopReason::max_tokens;
    self->send(order.sink, done_atom::value, order.request_id, r);
  } else if (script == Script::until_cancelled) {
    self->send(order.sink, tokens_atom::value, order.request_id, TokenBatch{{65}, {}});
  }
  return {
      [=](cancel_atom, uint64_t) mutable {
        r.generated_tokens = 1;
        r.stop_reason = StopReason::cancelled;
        self->send(order.sink, done_atom::value, order.request_id, r);
        self->quit();
      },
      [](tokens_atom, uint64_t) {},
      [](finished_atom, uint64_t) {},
  };
}

struct FakeWorker {
  std::string name;
  int64_t capacity = 4096;
  Script script = Script::answer;
  std::shared_ptr<Log> log;
  std::vector<caf::typed_response_promise<EncodeReport>> held;  // never delivered (silent)
};

WorkerActor::behavior_type fake_worker(WorkerActor::pointer self, std::shared_ptr<FakeWorker> w) {
  return {
      [=](encode_atom, EncodeOrder& o) -> caf::result<EncodeReport> {
        w->log->add(w->name + " encode host " + std::to_string(o.host) + " tokens " +
                    std::to_string(unpack_ids(o.shard_ids).size()));
        if (w->script == Script::refuse)
          return mesh_error(ErrorCode::overloaded,
                            "refused: request " + std::to_string(o.request_id) + " needs 600 KV tokens here but only " +
                                std::to_string(w->capacity) + " of " + std::to_string(w->capacity) + " are free");
        if (w->script == Script::silent_encode) {
          w->held.push_back(self->make_response_promise<EncodeReport>());
          return w->held.back();
        }
        return EncodeReport{o.request_id, o.host, int64_t(unpack_ids(o.shard_ids).size()), 0.01, w->capacity};
      },
      [=](phase2_atom, Phase2Order& o) -> caf::result<CoordinatorActor> {
        w->log->add(w->name + " phase2 query " + std::to_string(o.query.size()) + " max " +
                    std::to_string(o.max_new_tokens));
        if (w->script == Script::silent_phase2) {
          auto p = self->make_response_promise<CoordinatorActor>();
          return p;  // kept by nobody: never answered
        }
        return self->spawn(fake_coordinator, o, w->script);
      },
      [=](free_atom, uint64_t id) -> int64_t {
        w->log->add(w->name + " free " + std::to_string(id));
        return w->capacity;
      },
      [=](keep_atom, uint64_t id) -> int64_t {
        w->log->add(w->name + " keep " + std::to_string(id));
        return w->capacity;
      },
      [=](drop_atom, uint64_t id) -> int64_t {
        w->log->add(w->name + " drop " + std::to_string(id));
        return w->capacity;
      },
      [=](status_atom) -> WorkerInfo { return {}; },
      [](encoded_atom, uint64_t) {},
      [](served_atom, uint64_t) {},
  };
}

struct Deterministic {
  MeshConfig cfg{{1, false, true}};
  caf::actor_system sys{cfg};
  caf::scheduler::test_coordinator& sched = dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler());
  std::shared_ptr<Log> log = std::make_shared<Log>();
  std::shared_ptr<const RouterContext> ctx;
  RouterActor router;
  std::vector<WorkerActor> workers;
  std::vector<std::shared_ptr<FakeWorker>> fakes;

  explicit Deterministic(std::chrono::milliseconds queue_timeout = 60s, int max_replans = 3) {
    RouterOptions o;
    o.model_dir = STARMESH_GOLDEN_MODEL_DIR;
    o.block_size = 64;
    o.control_timeout = 1s;
    o.phase1_timeout = 3s;
    o.step_timeout = 2s;
    o.admission.queue_timeout = queue_timeout;
    o.admission.context_ttl = 10s;
    o.max_replans = max_replans;
    ctx = load_router_context(o).value();
    router = spawn_router(sys, ctx);
    sched.run();
  }
  ~Deterministic() {
    for (auto& w : workers) caf::anon_send_exit(w, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(router, caf::exit_reason::user_shutdown);
    sched.run();
  }

  void add_worker(const std::string& name, int64_t capacity, Script script = Script::answer) {
    auto w = std::make_shared<FakeWorker>();
    w->name = name;
    w->capacity = capacity;
    w->script = script;
    w->log = log;
    WorkerActor a = sys.spawn(fake_worker, w);
    WorkerInfo info;
    info.endpoint = name + ":1";
    info.device = "cpu";
    info.kv_capacity = capacity;
    info.kv_free = capacity;
    info.model = ctx->model;
    info.data_plane = "fake";
    info.address = {uint8_t(workers.size())};
    caf::anon_send(router, register_atom::value, a, info);
    sched.run();
    workers.push_back(a);
    fakes.push_back(w);
  }

  struct Outcome {
    std::vector<int32_t> ids;
    std::optional<Expected<GenerateSummary>> done;
  };
  std::shared_ptr<Outcome> submit(GenerateRequest r, bool cancel_at_first_token = false) {
    auto out = std::make_shared<Outcome>();
    MeshClient client(sys, router, 1s);
    auto l = log;
    client.submit(
        {std::move(r), false},
        [out, l, cancel_at_first_token](const ClientChunk& c) {
          out->ids.insert(out->ids.end(), c.ids.begin(), c.ids.end());
          if (!c.ids.empty()) l->add("client tokens " + std::to_string(c.ids.front()));
          return !cancel_at_first_token;
        },
        [out, l](Expected<GenerateSummary> s) {
          l->add(s ? "client done " + std::string(to_string(s->stop_reason)) : "client failed");
          out->done.emplace(std::move(s));
        });
    return out;
  }

  static GenerateRequest request(size_t context, size_t query, int max_new = 2) {
    GenerateRequest r;
    for (size_t i = 0; i < context; ++i) r.context_ids.push_back(int32_t(10 + i % 100));
    for (size_t i = 0; i < query; ++i) r.query_ids.push_back(int32_t(20 + i));
    r.max_new_tokens = max_new;
    return r;
  }

  std::vector<WorkerView> members() {
    std::vector<WorkerView> v;
    auto probe = sys.spawn([&v, this](caf::event_based_actor* self) {
      self->request(router, 1s, members_atom::value).then([&v](std::vector<WorkerView>& m) { v = m; });
    });
    sched.run();
    return v;
  }
};

// A router whose queue gives up after 1 s.
struct ShortQueue : Deterministic {
  ShortQueue() : Deterministic(1s) {}
};

// A router that never plans a request again after a lost worker.
struct NoRecovery : Deterministic {
  NoRecovery() : Deterministic(60s, 0) {}
};

// The pause before a request that lost a worker is planned again (request_driver.cpp), and a
// little more.
constexpr auto kAfterReplanPause = 201ms;

size_t count_with(const std::vector<std::string>& lines, const std::string& part) {
  return size_t(std::count_if(lines.begin(), lines.end(),
                              [&](const std::string& l) { return l.find(part) != std::string::npos; }));
}

}  // namespace

TEST_CASE_FIXTURE(Deterministic,
                  "the message order of a request: place, phase 1 everywhere, phase 2 on the last host, stream, free") {
  add_worker("w1", 4096);
  add_worker("w2", 4096);
  add_worker("w3", 8192);  // the most free KV: the query host
  auto out = submit(request(300, 5));
  sched.run();
  REQUIRE(out->done.has_value());
  REQUIRE(*out->done);
  const GenerateSummary& s = out->done->value();
  CHECK(s.hosts == 3);
  CHECK(s.context_tokens == 300);
  CHECK(s.query_tokens == 5);
  CHECK(s.generated_tokens == 2);
  CHECK(s.stop_reason == StopReason::max_tokens);
  CHECK(out->ids == std::vector<int32_t>{65, 66});
  // 300 tokens in blocks of 64: 5 blocks over 3 hosts = 2 + 2 + 1 (128, 128, 44 tokens). The
  // driver sends the frees before the client's done; the client, already scheduled, runs first.
  const std::vector<std::string> want = {"w1 encode host 0 tokens 128",
                                         "w2 encode host 1 tokens 128",
                                         "w3 encode host 2 tokens 44",
                                         "w3 phase2 query 5 max 2",
                                         "client tokens 65",
                                         "client tokens 66",
                                         "client done max_tokens",
                                         "w1 free 1",
                                         "w2 free 1",
                                         "w3 free 1"};
  CAPTURE(joined(log->lines));
  CHECK(log->lines == want);
  for (const auto& w : members()) CHECK(w.reserved == 0);  // released
}

TEST_CASE_FIXTURE(Deterministic,
                  "a worker that does not answer phase 1: timeout, an error that names it, shards freed") {
  add_worker("w1", 4096);
  add_worker("w2", 4096, Script::silent_encode);
  auto out = submit(request(200, 4));
  sched.run();
  CHECK_FALSE(out->done.has_value());  // waiting, not hanging: time has not moved
  sched.advance_time(3s + 1ms);
  sched.run();
  REQUIRE(out->done.has_value());
  REQUIRE_FALSE(*out->done);
  CHECK(out->done->error().message == "worker 2 at w2:1 did not finish phase 1 within 3 s");
  CHECK(out->done->code() == ErrorCode::timeout);
  CHECK(log->lines.back() == "client failed");
  CHECK(std::count(log->lines.begin(), log->lines.end(), "w1 free 1") == 1);
  CHECK(std::count(log->lines.begin(), log->lines.end(), "w2 free 1") == 1);
  for (const auto& w : members()) CHECK(w.reserved == 0);
}

TEST_CASE_FIXTURE(Deterministic, "a query host that does not answer the start of phase 2") {
  add_worker("w1", 4096, Script::silent_phase2);
  auto out = submit(request(100, 3));
  sched.run();
  CHECK_FALSE(out->done.has_value());
  sched.advance_time(1s + 1ms);
  sched.run();
  REQUIRE(out->done.has_value());
  REQUIRE_FALSE(*out->done);
  CHECK(out->done->error().message == "worker 1 at w1:1 did not answer within 1 s (starting phase 2)");
  CHECK(out->done->code() == ErrorCode::timeout);
}

TEST_CASE_FIXTURE(Deterministic, "a coordinator that goes quiet: the step timeout ends the request") {
  add_worker("w1", 4096, Script::silent_coordinator);
  auto out = submit(request(100, 3));
  sched.run();
  CHECK_FALSE(out->done.has_value());
  sched.advance_time(2s + 1ms);
  sched.run();
  REQUIRE(out->done.has_value());
  REQUIRE_FALSE(*out->done);
  CHECK(out->done->error().message == "the query coordinator on worker 1 at w1:1 sent nothing for 2 s");
}

TEST_CASE_FIXTURE(Deterministic, "a worker that refuses for lack of capacity: its words reach the client") {
  add_worker("w1", 4096);
  add_worker("w2", 4096, Script::refuse);
  auto out = submit(request(200, 4));
  sched.run();
  REQUIRE(out->done.has_value());
  REQUIRE_FALSE(*out->done);
  CHECK(out->done->error().message ==
        "worker 2 at w2:1: refused: request 1 needs 600 KV tokens here but only 4096 of 4096 are free");
  CHECK(out->done->code() == ErrorCode::overloaded);  // the worker's code, through the driver
  for (const auto& w : members()) CHECK(w.reserved == 0);
}

TEST_CASE_FIXTURE(Deterministic, "the router refuses a request the workers cannot hold, without asking them") {
  add_worker("w1", 100);
  add_worker("w2", 100);
  auto out = submit(request(500, 4));
  sched.run();
  REQUIRE(out->done.has_value());
  REQUIRE_FALSE(*out->done);
  CHECK(out->done->error().message.find("not enough free KV capacity") != std::string::npos);
  CHECK(out->done->error().message.find("200 free tokens") != std::string::npos);
  CHECK(out->done->code() == ErrorCode::refused);
  CHECK(std::none_of(log->lines.begin(), log->lines.end(),
                     [](const std::string& l) { return l.find("encode") != std::string::npos; }));
}

TEST_CASE_FIXTURE(NoRecovery, "with recovery off, a worker that goes away during phase 1 fails the request") {
  add_worker("w1", 4096);
  add_worker("w2", 4096, Script::silent_encode);
  auto out = submit(request(200, 4));
  sched.run();
  caf::anon_send_exit(workers[1], caf::exit_reason::kill);
  sched.run();
  REQUIRE(out->done.has_value());
  REQUIRE_FALSE(*out->done);
  const std::string& why = out->done->error().message;
  CAPTURE(why);
  CHECK(why.find("worker 2 at w2:1") == 0);
  CHECK((why.find("went away") != std::string::npos));
  CHECK(out->done->code() == ErrorCode::unavailable);
  CHECK(members().size() == 1);  // the router forgot it
}

TEST_CASE_FIXTURE(Deterministic, "a worker lost during phase 1: the request is planned again on the workers left") {
  add_worker("w1", 4096);
  add_worker("w2", 4096, Script::silent_encode);
  auto out = submit(request(200, 4));
  sched.run();
  REQUIRE(count_with(log->lines, "encode host") == 2);
  caf::anon_send_exit(workers[1], caf::exit_reason::kill);
  sched.run();
  CHECK_FALSE(out->done.has_value());  // waiting for the router to take the worker out
  sched.advance_time(kAfterReplanPause);
  sched.run();
  REQUIRE(out->done.has_value());
  REQUIRE_MESSAGE(*out->done, out->done->error().message);
  CHECK(out->ids == std::vector<int32_t>{65, 66});
  CHECK((*out->done)->hosts == 1);
  CHECK(count_with(log->lines, "w1 free 1") == 1);                    // the first attempt's shard went
  CHECK(count_with(log->lines, "w1 encode host 0 tokens 200") == 1);  // the whole context, on w1
  CHECK(count_with(log->lines, "w1 phase2 query 4 max 2") == 1);
  CHECK(members().size() == 1);
  CHECK(members()[0].reserved == 0);  // both attempts' KV released
}

TEST_CASE_FIXTURE(Deterministic, "a query host lost in phase 2: its tokens are replayed, not sent again") {
  add_worker("w1", 2048);
  add_worker("w2", 4096, Script::until_cancelled);  // the query host (most free KV): one token, then waits
  auto out = submit(request(200, 4, 3));
  sched.run();
  REQUIRE(out->ids == std::vector<int32_t>{65});
  REQUIRE(count_with(log->lines, "w2 phase2 query 4 max 3") == 1);
  caf::anon_send_exit(workers[1], caf::exit_reason::kill);
  sched.run();
  sched.advance_time(kAfterReplanPause);
  sched.run();
  REQUIRE(out->done.has_value());
  REQUIRE_MESSAGE(*out->done, out->done->error().message);
  // The next attempt's query holds the token the client has; it may make 2 more.
  CHECK(count_with(log->lines, "w1 phase2 query 5 max 2") == 1);
  // The client got 65 once from the first attempt, then what the second streamed (the fake
  // coordinator streams 65, 66 whatever it is asked), and nothing from the cancelled one.
  CHECK(out->ids == std::vector<int32_t>{65, 65, 66});
  CHECK((*out->done)->generated_tokens == 3);
}

TEST_CASE_FIXTURE(Deterministic, "a lost worker with too little capacity left: a retriable unavailable, not a hang") {
  add_worker("w1", 150);
  add_worker("w2", 4096, Script::silent_encode);
  auto out = submit(request(400, 4));
  sched.run();
  caf::anon_send_exit(workers[1], caf::exit_reason::kill);
  sched.run();
  sched.advance_time(kAfterReplanPause);
  sched.run();
  REQUIRE(out->done.has_value());
  REQUIRE_FALSE(*out->done);
  const std::string& why = out->done->error().message;
  CAPTURE(why);
  CHECK(out->done->code() == ErrorCode::unavailable);
  CHECK(why.find("the workers left cannot take the request") != std::string::npos);
  CHECK(why.find("worker 2 at w2:1") != std::string::npos);
}

TEST_CASE_FIXTURE(Deterministic, "bad requests are refused with what to change") {
  add_worker("w1", 4096);
  auto r = request(0, 3);
  auto out = submit(r);
  sched.run();
  REQUIRE(out->done.has_value());
  CHECK(out->done->error().message.find("star mode needs a context") != std::string::npos);
  CHECK(out->done->code() == ErrorCode::invalid_argument);
  r = request(10, 0);
  out = submit(r);
  sched.run();
  CHECK(out->done->error().message.find("the query is empty") != std::string::npos);
  r = request(10, 2);
  r.context_ids[3] = 99999;
  out = submit(r);
  sched.run();
  CHECK(out->done->error().message.find("token id 99999 is outside") != std::string::npos);
  r = request(10, 2);
  r.mode = static_cast<AttentionMode>(9);  // from a peer that speaks another version
  out = submit(r);
  sched.run();
  CHECK(out->done->error().message.find("unknown attention mode 9") != std::string::npos);
  CHECK(out->done->code() == ErrorCode::invalid_argument);
}

TEST_CASE_FIXTURE(Deterministic,
                  "cancel: the client's sink returns false, the coordinator stops, the request ends as cancelled") {
  add_worker("w1", 4096, Script::until_cancelled);
  auto out = submit(request(100, 3, 8), true);
  sched.run();
  REQUIRE(out->done.has_value());
  REQUIRE(*out->done);
  CHECK(out->done->value().stop_reason == StopReason::cancelled);
  CHECK(out->ids == std::vector<int32_t>{65});
  const std::vector<std::string> want = {"w1 encode host 0 tokens 100", "w1 phase2 query 3 max 8", "client tokens 65",
                                         "w1 free 1", "client done cancelled"};
  CAPTURE(joined(log->lines));
  CHECK(log->lines == want);
}

TEST_CASE_FIXTURE(Deterministic, "global mode runs on one host with one block and no anchor") {
  add_worker("w1", 4096);
  add_worker("w2", 4096);
  auto r = request(0, 6);
  r.mode = AttentionMode::global;
  auto out = submit(r);
  sched.run();
  REQUIRE(out->done.has_value());
  REQUIRE(*out->done);
  CHECK(out->done->value().hosts == 1);
  CHECK(out->done->value().context_tokens == 5);  // the query's first 5 tokens became the context
  CHECK(log->lines.front() == "w1 encode host 0 tokens 5");
}

TEST_CASE_FIXTURE(Deterministic,
                  "a request that must wait for KV queues, and runs when the request before it frees its KV") {
  add_worker("w1", 300, Script::silent_coordinator);
  add_worker("w2", 300, Script::silent_coordinator);
  auto first = submit(request(400, 4));
  sched.run();
  const size_t first_encodes = count_with(log->lines, "encode");
  REQUIRE(first_encodes == 2);
  auto second = submit(request(400, 4));  // fits two idle workers, not beside the first
  sched.run();
  CHECK(count_with(log->lines, "encode") == first_encodes);  // waiting: not sent to any worker
  CHECK_FALSE(second->done.has_value());
  CHECK(ctx->metrics->queued.value() == 1);
  sched.advance_time(2s + 1ms);  // the first one's coordinator is silent: its step timeout ends it
  sched.run();
  REQUIRE(first->done.has_value());
  CHECK_FALSE(*first->done);
  CAPTURE(joined(log->lines));
  // The second one went to the workers only after they freed the first.
  const auto first_free = std::find(log->lines.begin(), log->lines.end(), "w1 free 1");
  REQUIRE(first_free != log->lines.end());
  CHECK(count_with(std::vector<std::string>(first_free, log->lines.end()), "encode") == 2);
  CHECK(ctx->metrics->queued.value() == 0);
  CHECK(ctx->metrics->queue_wait_seconds.snapshot().count == 1);
  sched.advance_time(2s + 1ms);
  sched.run();
  REQUIRE(second->done.has_value());
  for (const auto& w : members()) CHECK(w.reserved == 0);
}

TEST_CASE_FIXTURE(ShortQueue, "a queued request gives up after the queue timeout, with the numbers") {
  add_worker("w1", 300, Script::silent_coordinator);
  add_worker("w2", 300, Script::silent_coordinator);
  auto first = submit(request(400, 4));
  sched.run();
  auto second = submit(request(400, 4));
  sched.run();
  CHECK_FALSE(second->done.has_value());
  sched.advance_time(1s + 1ms);
  sched.run();
  REQUIRE(second->done.has_value());
  REQUIRE_FALSE(*second->done);
  const std::string& why = second->done->error().message;
  CAPTURE(why);
  CHECK(why.find("no KV capacity freed up for this request within 1 s in the queue") != std::string::npos);
  CHECK(second->done->code() == ErrorCode::timeout);
  CHECK(why.find("not enough free KV capacity") != std::string::npos);
  CHECK(count_with(log->lines, "encode") == 2);  // only the first one's
  CHECK_FALSE(first->done.has_value());
}

TEST_CASE_FIXTURE(Deterministic, "a kept context stays booked, and goes after its TTL unused") {
  add_worker("w1", 4096);
  add_worker("w2", 4096);
  auto r = request(200, 4);
  r.keep_context = true;
  auto out = submit(r);
  sched.run();
  REQUIRE(out->done.has_value());
  REQUIRE(*out->done);
  CHECK_FALSE(out->done->value().context_id.empty());  // a random 128-bit name, not the request id
  CAPTURE(joined(log->lines));
  CHECK(count_with(log->lines, "keep 1") == 2);  // kept on both hosts, not freed
  CHECK(count_with(log->lines, "free 1") == 0);
  int64_t reserved = 0;
  for (const auto& w : members()) reserved += w.reserved;
  CHECK(reserved == 200);
  CHECK(ctx->metrics->kept_contexts.value() == 1);
  sched.advance_time(10s + 1ms);
  sched.run();
  CHECK(count_with(log->lines, "drop 1") == 2);
  for (const auto& w : members()) CHECK(w.reserved == 0);
  CHECK(ctx->metrics->kept_contexts.value() == 0);
}

TEST_CASE_FIXTURE(Deterministic, "a question over a kept context waits for its query host's KV, then runs") {
  add_worker("w1", 400);
  auto r = request(200, 4);
  r.keep_context = true;
  auto kept = submit(r);
  sched.run();
  REQUIRE(kept->done.has_value());
  REQUIRE(*kept->done);
  const ContextId cid = kept->done->value().context_id;
  // Two questions of 104 query and generated tokens each: the 200 free tokens beside the
  // context hold one; the other waits for it, then runs.
  auto q = request(0, 4, 100);
  q.context_id = cid;
  auto b = submit(q);
  auto c = submit(q);
  sched.run();
  CAPTURE(joined(log->lines));
  REQUIRE(b->done.has_value());
  REQUIRE(c->done.has_value());
  CHECK(*b->done);
  CHECK(*c->done);
  CHECK(ctx->metrics->queue_wait_seconds.snapshot().count == 1);
  const auto first_free =
      std::find_if(log->lines.begin(), log->lines.end(), [](const std::string& l) { return l.find("w1 free") == 0; });
  REQUIRE(first_free != log->lines.end());
  CHECK(count_with(std::vector<std::string>(first_free, log->lines.end()), "encode") ==
        1);  // the second attached after
  int64_t reserved = 0;
  for (const auto& w : members()) reserved += w.reserved;
  CHECK(reserved == 200);  // only the kept context
  // A question that cannot fit even beside an idle context is refused at once.
  auto huge = request(0, 4, 1000);
  huge.context_id = cid;
  auto refused = submit(huge);
  sched.run();
  REQUIRE(refused->done.has_value());
  REQUIRE_FALSE(*refused->done);
  CHECK(refused->done->error().message.find("context " + cid.hex()) != std::string::npos);
  CHECK(refused->done->code() == ErrorCode::refused);
}
