// The public API end to end: a real Star Attention engine behind generate_service_i, the
// ApiServer on 127.0.0.1, ApiClient in process and the `starmesh client` CLI in another process.
#include <dirent.h>
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "api/child_process.hpp"
#include "api/engine_service.hpp"
#include "starmesh/api/api_client.hpp"
#include "starmesh/api/api_server.hpp"
#include "starmesh/attention/star_session.hpp"
#include "starmesh/backend/cpu_backend.hpp"
#include "starmesh/model/generator.hpp"
#include "starmesh/model/utf8_stream.hpp"

namespace starmesh {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// The embedded model on the CPU backend. Two of them: one behind the server, one for the
// direct runs the streamed tokens are compared with.
struct Engine {
  ThreadPool pool{2};
  CpuBackend backend{pool};
  std::optional<Transformer> model;
  std::optional<Tokenizer> tokenizer;
  Engine() {
    auto m = Transformer::load(backend, STARMESH_GOLDEN_MODEL_DIR);
    auto t = Tokenizer::load(std::string(STARMESH_GOLDEN_MODEL_DIR) + "/tokenizer.json");
    if (!m || !t) throw std::runtime_error("cannot load the embedded model");
    model.emplace(std::move(*m));
    tokenizer.emplace(std::move(*t));
  }
};
Engine& served_engine() {
  static Engine e;
  return e;
}
Engine& reference_engine() {
  static Engine e;
  return e;
}

const char* kContext =
    "Star Attention splits a long context into blocks. Each host encodes its blocks with the first "
    "block as an anchor, in parallel and without talking to the others. The query then attends to "
    "every cached token exactly: each host returns its partial output and log-sum-exp, and the "
    "query host merges them. This makes the first phase fast and keeps the second one exact. "
    "The anchor block stands in for the attention sink that global attention would have seen.";

// What the engine makes of a request when called directly, without the API in between.
struct Generated {
  std::vector<int32_t> ids;
  std::string text;
  int chunks = 0;
};

Generated run_direct(const GenerateRequest& r) {
  Engine& e = reference_engine();
  auto tokens = test::request_tokens(r, *e.tokenizer);
  REQUIRE(tokens);
  auto& [context, query] = *tokens;
  GenerationParams params{r.max_new_tokens, r.sampling, e.model->config().eos_token_ids};
  Generated out;
  Utf8Stream text;
  auto on_token = [&](int32_t id) {
    out.ids.push_back(id);
    if (!e.tokenizer->is_special(id)) out.text += text.push(*e.tokenizer->token_bytes(id));
    return true;
  };
  if (r.mode == AttentionMode::star) {
    StarOptions options{r.block_size == 0 ? test::EngineService::kDefaultBlockSize : r.block_size, r.anchor_size,
                        r.max_hosts == 0 ? test::EngineService::kHosts : r.max_hosts};
    auto session = StarSession::encode(*e.model, context, options, int64_t(query.size()) + r.max_new_tokens);
    REQUIRE(session);
    auto step = [&](std::span<const int32_t> ids) { return (*session)->step(ids); };
    REQUIRE(generate_with(e.backend, step, query, params, on_token));
  } else {
    std::vector<int32_t> prompt = context;
    prompt.insert(prompt.end(), query.begin(), query.end());
    auto cache = e.model->make_cache(int64_t(prompt.size()) + r.max_new_tokens);
    REQUIRE(cache);
    REQUIRE(generate(*e.model, *cache, prompt, params, on_token));
  }
  out.text += text.flush();
  return out;
}

// The service and the server on an ephemeral port of 127.0.0.1.
struct Served {
  test::EngineService service{*served_engine().model, *served_engine().tokenizer};
  std::unique_ptr<ApiServer> server;
  Served() {
    auto s = ApiServer::start(service, "127.0.0.1:0", [] { return ServerInfo{"starmesh-tiny", 4, "", 131072}; });
    REQUIRE_MESSAGE(s, (s ? "" : s.error().message));
    server = std::move(*s);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(server->port()); }
  std::unique_ptr<ApiClient> client() const {
    auto c = ApiClient::connect(address());
    REQUIRE_MESSAGE(c, (c ? "" : c.error().message));
    return std::move(*c);
  }
};

Expected<GenerateSummary> stream(ApiClient& client, const GenerateRequest& r, Generated& got,
                                 int stop_after_chunks = -1) {
  return client.generate(r, [&](const TokenChunk& chunk) {
    got.ids.insert(got.ids.end(), chunk.ids.begin(), chunk.ids.end());
    got.text += chunk.text;
    return ++got.chunks != stop_after_chunks;
  });
}

GenerateRequest star_request() {
  GenerateRequest r;
  r.context_text = kContext;
  r.query_text = " What does the anchor stand in for?";
  r.mode = AttentionMode::star;
  r.block_size = 32;
  r.anchor_size = 16;
  r.max_hosts = 3;
  r.max_new_tokens = 24;
  return r;
}

// Waits until pred() holds, up to `timeout`.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = Clock::now() + timeout;
  while (!pred()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

int open_fds() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (readdir(d)) ++n;
    closedir(d);
  }
  return n;
}

std::string join_ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += (s.empty() ? "" : ",") + std::to_string(id);
  return s;
}

TEST_CASE("a Star Attention request streams the tokens StarSession makes, and the summary") {
  Served served;
  auto client = served.client();
  const GenerateRequest r = star_request();
  const Generated want = run_direct(r);
  Generated got;
  auto summary = stream(*client, r, got);
  REQUIRE_MESSAGE(summary, (summary ? "" : summary.error().message));
  CHECK(got.ids == want.ids);
  CHECK(got.text == want.text);
  CHECK(summary->generated_tokens == int64_t(want.ids.size()));
  CHECK(summary->context_tokens == int64_t(reference_engine().tokenizer->encode(kContext, true).size()));
  CHECK(summary->query_tokens > 0);
  CHECK(summary->hosts == 3);
  CHECK(summary->phase1_seconds > 0);
  CHECK(summary->phase1_max_host_seconds > 0);  // crossed the wire
  CHECK(summary->phase1_max_host_seconds <= summary->phase1_seconds);
  CHECK((summary->stop_reason == StopReason::max_tokens || summary->stop_reason == StopReason::eos));
  CHECK(eventually([&] { return served.server->active_requests() == 0; }));

  auto info = client->info();
  REQUIRE(info);
  CHECK(info->model == "starmesh-tiny");
  CHECK(info->workers == 4);
  CHECK(info->version == "0.1.0");
  CHECK(info->max_context_tokens == 131072);
}

TEST_CASE("global mode with token ids and seeded sampling streams the tokens generate() makes") {
  Served served;
  auto client = served.client();
  GenerateRequest r;
  r.mode = AttentionMode::global;
  r.context_ids = reference_engine().tokenizer->encode(kContext, true);
  r.query_ids = reference_engine().tokenizer->encode(" And the query?", false);
  r.max_new_tokens = 20;
  r.sampling = SamplingParams{0.9f, 40, 0.95f, 7};
  const Generated want = run_direct(r);
  Generated got;
  auto summary = stream(*client, r, got);
  REQUIRE_MESSAGE(summary, (summary ? "" : summary.error().message));
  CHECK(got.ids == want.ids);
  CHECK(got.text == want.text);
  CHECK(summary->hosts == 1);
}

TEST_CASE("requests that cannot be served are refused with the service's message and code") {
  Served served;
  auto client = served.client();
  auto refused = [&](GenerateRequest r) {
    Generated got;
    auto s = stream(*client, r, got);
    REQUIRE_FALSE(s);
    CHECK(got.ids.empty());
    CHECK(s.error().message.find("remote exception") == std::string::npos);
    CHECK_MESSAGE(s.code() == ErrorCode::invalid_argument, s.error().message);
    return s.error().message;
  };
  GenerateRequest bad_block = star_request();
  bad_block.block_size = -8;
  CHECK(refused(bad_block) == "block_size must be > 0, got -8");
  GenerateRequest big_anchor = star_request();
  big_anchor.anchor_size = 64;
  CHECK(refused(big_anchor) == "anchor_size (64) must not exceed block_size (32)");
  GenerateRequest empty_query = star_request();
  empty_query.query_text.clear();
  CHECK(refused(empty_query) == "the query is empty: give query text or token ids");
  GenerateRequest bad_id;
  bad_id.mode = AttentionMode::global;
  bad_id.query_ids = {2043, 999999};
  CHECK(refused(bad_id).find("token id 999999") != std::string::npos);
  GenerateRequest bad_top_p = star_request();
  bad_top_p.sampling.top_p = 0;
  CHECK(refused(bad_top_p).rfind("top_p must be in (0, 1]", 0) == 0);
  // What the wire cannot say is refused before sending.
  GenerateRequest bad_mode = star_request();
  bad_mode.mode = static_cast<AttentionMode>(7);
  CHECK(refused(bad_mode) == "unknown attention mode 7");

  // Still healthy.
  Generated got;
  REQUIRE(stream(*client, star_request(), got));
  CHECK(got.ids == run_direct(star_request()).ids);
}

TEST_CASE("a client that returns false cancels the request, and the server serves the next one") {
  Served served;
  auto client = served.client();
  GenerateRequest r = star_request();
  r.max_new_tokens = 400;
  served.service.set_token_delay(2ms);
  Generated got;
  auto summary = stream(*client, r, got, /*stop_after_chunks=*/1);
  REQUIRE_MESSAGE(summary, (summary ? "" : summary.error().message));
  CHECK(summary->stop_reason == StopReason::cancelled);
  CHECK(summary->generated_tokens < 400);
  CHECK(got.chunks == 1);
  CHECK(served.service.cancelled() == 1);
  CHECK(eventually([&] { return served.server->active_requests() == 0; }));

  served.service.set_token_delay(0ms);
  Generated next;
  REQUIRE(stream(*client, star_request(), next));
  CHECK(next.ids == run_direct(star_request()).ids);
}

TEST_CASE("the starmesh CLI in another process streams the same text") {
  Served served;
  const GenerateRequest r = star_request();
  const Generated want = run_direct(r);
  test::ChildProcess cli({STARMESH_CLI, "client", "generate", "--connect", served.address(), "--context", kContext,
                          "--query", r.query_text, "--mode", "star", "--block-size", "32", "--anchor-size", "16",
                          "--max-hosts", "3", "--max-tokens", "24"});
  const int exit_code = cli.wait(20s);
  INFO(cli.err());
  REQUIRE(exit_code == 0);
  CHECK(!want.text.empty());
  CHECK(cli.out() == want.text + "\n");
  CHECK(cli.err().find("stop: max_tokens") != std::string::npos);

  // Token ids, sampling, and a refusal as exit code 1 with the message.
  GenerateRequest sampled;
  sampled.mode = AttentionMode::global;
  sampled.query_ids = {2043, 17, 300, 5};
  sampled.max_new_tokens = 12;
  sampled.sampling = SamplingParams{0.8f, 50, 0.9f, 3};
  test::ChildProcess ids({STARMESH_CLI, "client", "generate", "--connect", served.address(), "--prompt-ids",
                          join_ids(sampled.query_ids), "--max-tokens", "12", "--temperature", "0.8", "--top-k", "50",
                          "--top-p", "0.9", "--seed", "3"});
  REQUIRE(ids.wait(20s) == 0);
  CHECK(ids.out() == run_direct(sampled).text + "\n");
  test::ChildProcess refused(
      {STARMESH_CLI, "client", "generate", "--connect", served.address(), "--prompt-ids", "2043,999999"});
  CHECK(refused.wait(20s) == 1);
  INFO(refused.err());
  CHECK(refused.err().find("error: token id 999999") != std::string::npos);

  // A tokenized context from a file (a long one does not fit a command line): the same tokens
  // as the text tokenized by the server, and the summary names the slowest host's phase 1.
  GenerateRequest by_ids = star_request();
  by_ids.context_ids = reference_engine().tokenizer->encode(kContext, true);
  by_ids.context_text.clear();
  const std::string ids_file = "/tmp/starmesh_test_ids_" + std::to_string(::getpid());
  std::ofstream(ids_file) << join_ids(by_ids.context_ids) << "\n";
  test::ChildProcess from_file({STARMESH_CLI, "client", "generate", "--connect", served.address(), "--context-ids-file",
                                ids_file, "--query", by_ids.query_text, "--mode", "star", "--block-size", "32",
                                "--anchor-size", "16", "--max-hosts", "3", "--max-tokens", "24"});
  REQUIRE(from_file.wait(20s) == 0);
  CHECK(from_file.out() == run_direct(by_ids).text + "\n");
  CHECK(from_file.out() == want.text + "\n");
  CHECK(from_file.err().find("slowest host") != std::string::npos);
  std::remove(ids_file.c_str());

  // --json: one object with what the text run printed, for scripts.
  test::ChildProcess as_json({STARMESH_CLI,
                              "client",
                              "generate",
                              "--connect",
                              served.address(),
                              "--context",
                              kContext,
                              "--query",
                              r.query_text,
                              "--mode",
                              "star",
                              "--block-size",
                              "32",
                              "--anchor-size",
                              "16",
                              "--max-hosts",
                              "3",
                              "--max-tokens",
                              "24",
                              "--json"});
  REQUIRE(as_json.wait(20s) == 0);
  const auto j = nlohmann::json::parse(as_json.out());
  CHECK(j["text"] == want.text);
  CHECK(j["ids"].get<std::vector<int32_t>>() == want.ids);
  CHECK(j["stop"] == "max_tokens");
  CHECK(j["hosts"] == 3);
  CHECK(j["context_id"] == "");
  CHECK(j["ttft_s"].get<double>() > 0);

  test::ChildProcess info({STARMESH_CLI, "client", "info", "--connect", served.address()});
  REQUIRE(info.wait(20s) == 0);
  CHECK(info.out().find("model: starmesh-tiny") != std::string::npos);
}

TEST_CASE("a client process that dies mid-stream cancels its request") {
  Served served;
  served.service.set_token_delay(10ms);
  test::ChildProcess cli({STARMESH_CLI, "client", "generate", "--connect", served.address(), "--prompt-ids",
                          "2043,17,300,5", "--max-tokens", "1000"});
  CHECK_FALSE(cli.read_some_stdout(10s).empty());
  cli.kill_now();
  CHECK(eventually([&] { return served.service.cancelled() == 1; }));
  CHECK(eventually([&] { return served.server->active_requests() == 0 && served.service.pending() == 0; }));

  served.service.set_token_delay(0ms);
  auto client = served.client();
  Generated got;
  REQUIRE(stream(*client, star_request(), got));
  CHECK(got.ids == run_direct(star_request()).ids);
}

TEST_CASE("stop() with a request in flight cancels it and returns") {
  Served served;
  served.service.set_token_delay(10ms);
  std::atomic<bool> streaming{false};
  std::optional<Expected<GenerateSummary>> result;
  std::thread client_thread([&] {
    auto client = served.client();
    GenerateRequest r = star_request();
    r.max_new_tokens = 1000;
    result.emplace(client->generate(r, [&](const TokenChunk&) {
      streaming = true;
      return true;
    }));
  });
  CHECK(eventually([&] { return streaming.load(); }, 10s));  // (no REQUIRE: the thread must be joined)
  const auto t0 = Clock::now();
  served.server->stop();
  CHECK(Clock::now() - t0 < 2s);
  client_thread.join();
  REQUIRE(result);
  REQUIRE_FALSE(*result);
  INFO(result->error().message);
  CHECK(result->error().message.find("connection to the server was lost") != std::string::npos);
  CHECK(result->code() == ErrorCode::unavailable);
  CHECK(eventually([&] { return served.service.cancelled() == 1 && served.service.pending() == 0; }));
  CHECK(served.server->active_requests() == 0);
}

TEST_CASE("100 small requests from 4 client threads: all served, nothing left behind") {
  Served served;
  std::vector<GenerateRequest> prompts(5);
  std::vector<std::vector<int32_t>> want(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    prompts[i].mode = AttentionMode::global;
    prompts[i].query_ids = {2043, int32_t(100 + 37 * i), int32_t(7 + i)};
    prompts[i].max_new_tokens = 3;
    want[i] = run_direct(prompts[i]).ids;
  }
  const int fds_before = open_fds();
  const auto t0 = Clock::now();
  std::atomic<int> ok{0}, mismatched{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      auto client = ApiClient::connect(served.address());
      if (!client) {
        failed += 25;
        return;
      }
      for (int i = 0; i < 25; ++i) {
        const size_t p = size_t(t + i) % prompts.size();
        Generated got;
        auto s = stream(**client, prompts[p], got);
        if (!s)
          ++failed;
        else if (got.ids != want[p])
          ++mismatched;
        else
          ++ok;
      }
    });
  for (auto& t : threads) t.join();
  CHECK(ok == 100);
  CHECK(mismatched == 0);
  CHECK(failed == 0);
  CHECK(Clock::now() - t0 < 15s);
  CHECK(eventually([&] { return served.server->active_requests() == 0 && served.service.pending() == 0; }));
  // The server closes its side of the four connections once it sees them end.
  CHECK(eventually([&] { return open_fds() <= fds_before; }));
}

// Emits `chunks` chunks of one id and `bytes` of text each, as fast as it can, on its own thread.
class Firehose final : public generate_service_i {
 public:
  Firehose(int chunks, size_t bytes) : chunks_(chunks), bytes_(bytes) {}
  void drop_context(ContextId, std::string, std::function<void(Status)> on_done) override {
    on_done(make_error("no contexts here"));
  }
  ~Firehose() override {
    if (thread_.joinable()) thread_.join();
  }
  void generate(GenerateRequest, std::function<bool(const TokenChunk&)> on_tokens,
                std::function<void(Expected<GenerateSummary>)> on_done) override {
    thread_ = std::thread([this, on_tokens = std::move(on_tokens), on_done = std::move(on_done)] {
      GenerateSummary s;
      for (int i = 0; i < chunks_; ++i) {
        if (!on_tokens(TokenChunk{{i}, std::string(bytes_, char('a' + i % 26))})) break;
        ++s.generated_tokens;
      }
      s.stop_reason = StopReason::max_tokens;
      produced = true;
      on_done(s);
    });
  }
  std::atomic<bool> produced{false};

 private:
  int chunks_;
  size_t bytes_;
  std::thread thread_;
};

TEST_CASE("a client that stops reading holds back the stream but not the generator, then gets it all in order") {
  // 400 chunks of 16 KiB: more than the stream's flow-control window (the socket send buffer,
  // 4 MiB at most here), so much of it waits on the server while the client does not read.
  constexpr size_t kBytes = 16 << 10;
  constexpr int kChunks = 400;
  Firehose service(kChunks, kBytes);
  auto server = ApiServer::start(service, "127.0.0.1:0");
  REQUIRE(server);
  auto client = ApiClient::connect("127.0.0.1:" + std::to_string((*server)->port()));
  REQUIRE(client);
  GenerateRequest r;
  r.query_text = "x";
  std::vector<int32_t> ids;
  size_t bytes = 0;
  bool in_order = true, producer_finished_while_blocked = false;
  int pushes = 0;
  size_t largest_push = 0;
  auto summary = (*client)->generate(r, [&](const TokenChunk& chunk) {
    if (++pushes == 1)  // the client stops reading: the producer must still finish
      producer_finished_while_blocked = eventually([&] { return service.produced.load(); }, 10s);
    for (size_t i = 0; i < chunk.ids.size(); ++i) {
      const int32_t id = chunk.ids[i];
      in_order = in_order && id == int32_t(ids.size()) &&
                 chunk.text.compare(i * kBytes, kBytes, std::string(kBytes, char('a' + id % 26))) == 0;
      ids.push_back(id);
    }
    bytes += chunk.text.size();
    largest_push = std::max(largest_push, chunk.text.size());
    return true;
  });
  REQUIRE(summary);
  CHECK(producer_finished_while_blocked);
  CHECK(summary->generated_tokens == kChunks);
  CHECK(ids.size() == size_t(kChunks));
  CHECK(bytes == kChunks * kBytes);
  CHECK(in_order);
  CHECK(pushes < kChunks);          // what flow control held back went out together...
  CHECK(largest_push <= 64 << 10);  // ...in pushes of bounded size
  MESSAGE(kChunks, " chunks arrived in ", pushes, " pushes");
}

// Forgets every request: drops the callbacks without a word.
class Forgetful final : public generate_service_i {
 public:
  void generate(GenerateRequest, std::function<bool(const TokenChunk&)>,
                std::function<void(Expected<GenerateSummary>)>) override {}
  void drop_context(ContextId, std::string, std::function<void(Status)> on_done) override {
    on_done(make_error("no contexts here"));
  }
};

TEST_CASE("a service that drops a request without an answer fails it instead of hanging") {
  Forgetful service;
  auto server = ApiServer::start(service, "127.0.0.1:0");
  REQUIRE(server);
  auto client = ApiClient::connect("127.0.0.1:" + std::to_string((*server)->port()));
  REQUIRE(client);
  GenerateRequest r;
  r.query_text = "x";
  auto summary = (*client)->generate(r, [](const TokenChunk&) { return true; });
  REQUIRE_FALSE(summary);
  CHECK(summary.error().message == "the server dropped the request without an answer");
  CHECK((*server)->active_requests() == 0);
}

TEST_CASE("connecting where no server listens is an error that names the address") {
  Served served;
  const std::string address = served.address();
  served.server->stop();
  auto c = ApiClient::connect(address);
  REQUIRE_FALSE(c);
  INFO(c.error().message);
  CHECK(c.error().message.find("cannot reach a starmesh server at '" + address + "'") == 0);
  CHECK(c.code() == ErrorCode::unavailable);
  auto bad = ApiServer::start(served.service, "127.0.0.1:99999");
  CHECK_FALSE(bad);
}

TEST_CASE("keep_context, context_id and dropContext travel over the wire") {
  Served served;
  auto client = served.client();
  GenerateRequest r = star_request();
  r.keep_context = true;
  Generated got;
  auto keep = stream(*client, r, got);
  REQUIRE_FALSE(keep);
  CHECK(keep.error().message.find("keep_context") != std::string::npos);
  CHECK(keep.code() == ErrorCode::invalid_argument);
  r.keep_context = false;
  const ContextId id = ContextId::parse("00112233445566778899aabbccddeeff").value();
  r.context_id = id;
  auto ask = stream(*client, r, got);
  REQUIRE_FALSE(ask);
  CHECK(ask.error().message.find("context 00112233445566778899aabbccddeeff") != std::string::npos);
  CHECK(ask.code() == ErrorCode::not_found);
  const Status drop = client->drop_context(ContextId::parse("ffeeddccbbaa99887766554433221100").value());
  REQUIRE_FALSE(drop);
  CHECK(drop.code() == ErrorCode::not_found);
  CHECK(drop.message().find("context ffeeddccbbaa99887766554433221100") != std::string::npos);
  CHECK(served.service.last_drop_tenant.empty());  // no tokens: one tenant
}

TEST_CASE("a request's priority travels over the wire") {
  Served served;
  auto client = served.client();
  for (Priority p : {Priority::high, Priority::low, Priority::normal}) {
    GenerateRequest r = star_request();
    r.priority = p;
    Generated got;
    REQUIRE(stream(*client, r, got));
    CHECK(served.service.last_priority == int(p));
  }
}

TEST_CASE("context ids are 32 hex digits, random, and parse back") {
  const ContextId a = ContextId::random(), b = ContextId::random();
  CHECK_FALSE(a.empty());
  CHECK(a != b);
  CHECK(a.hex().size() == 32);
  CHECK(ContextId::parse(a.hex()).value() == a);
  CHECK(ContextId::parse("00112233445566778899AABBCCDDEEFF").value().hex() == "00112233445566778899aabbccddeeff");
  for (const char* bad : {"", "123", "00112233445566778899aabbccddeeff0", "g0112233445566778899aabbccddeeff"}) {
    CAPTURE(bad);
    auto p = ContextId::parse(bad);
    REQUIRE_FALSE(p);
    CHECK(p.code() == ErrorCode::invalid_argument);
  }
}

TEST_CASE("a router with API tokens admits only clients that log in with one of them") {
  char dir_tmpl[] = "/tmp/starmesh-tokens-XXXXXX";
  REQUIRE(mkdtemp(dir_tmpl));
  const std::string dir = dir_tmpl, file = dir + "/tokens", empty = dir + "/empty";
  std::ofstream(file) << "# issued 2026-11-29\n  alpha-7f3c  \n\nbeta-91d2\n";
  std::ofstream(empty) << "# nothing yet\n\n";
  auto tokens = load_api_tokens(file);
  REQUIRE_MESSAGE(tokens, (tokens ? "" : tokens.error().message));
  CHECK(*tokens == std::vector<std::string>{"alpha-7f3c", "beta-91d2"});
  CHECK(load_api_tokens(empty).error().message.find("holds no token") != std::string::npos);
  CHECK(load_api_tokens(dir + "/missing").error().message.find("cannot read") != std::string::npos);

  test::EngineService service{*served_engine().model, *served_engine().tokenizer};
  auto server = ApiServer::start(service, "127.0.0.1:0", {}, *tokens);
  REQUIRE(server);
  const std::string address = "127.0.0.1:" + std::to_string((*server)->port());
  for (const std::string& t : *tokens) {
    auto c = ApiClient::connect(address, t);
    REQUIRE_MESSAGE(c, (c ? "" : c.error().message));
    CHECK((*c)->info());
  }
  for (const std::string bad : {"alpha-7f3", "alpha-7f3cX", "", "beta-91d2 "}) {
    CAPTURE(bad);
    const auto t0 = std::chrono::steady_clock::now();
    auto c = ApiClient::connect(address, bad);
    REQUIRE_FALSE(c);
    CHECK(c.error().message.find("login refused") != std::string::npos);
    CHECK(c.code() == ErrorCode::unauthenticated);
    CHECK(c.error().message.find(address) == 0);
    CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(250));  // guessing is slow
  }
  // The CLI: the token from --token-file, or from $STARMESH_API_TOKEN; none is refused.
  test::ChildProcess with_file({STARMESH_CLI, "client", "info", "--connect", address, "--token-file", file});
  CHECK(with_file.wait(std::chrono::seconds(20)) == 0);
  CHECK(with_file.out().find("model:") != std::string::npos);
  test::ChildProcess without({STARMESH_CLI, "client", "info", "--connect", address});
  CHECK(without.wait(std::chrono::seconds(20)) != 0);
  CHECK(without.err().find("login refused") != std::string::npos);
  setenv("STARMESH_API_TOKEN", "beta-91d2", 1);
  test::ChildProcess with_env({STARMESH_CLI, "client", "info", "--connect", address});
  CHECK(with_env.wait(std::chrono::seconds(20)) == 0);
  unsetenv("STARMESH_API_TOKEN");
  std::filesystem::remove_all(dir);
}

// Fails every request and every drop with the error it is given.
class Failing final : public generate_service_i {
 public:
  Error error;
  void generate(GenerateRequest, std::function<bool(const TokenChunk&)>,
                std::function<void(Expected<GenerateSummary>)> on_done) override {
    on_done(error);
  }
  void drop_context(ContextId, std::string, std::function<void(Status)> on_done) override { on_done(error); }
};

TEST_CASE("every error code and its message survive the Cap'n Proto wire") {
  Failing service;
  auto server = ApiServer::start(service, "127.0.0.1:0");
  REQUIRE(server);
  auto client = ApiClient::connect("127.0.0.1:" + std::to_string((*server)->port()));
  REQUIRE(client);
  GenerateRequest r;
  r.query_text = "x";
  for (ErrorCode code : kAllErrorCodes) {
    CAPTURE(to_string(code));
    // A message that itself looks like a prefix must come back word for word.
    service.error = Error{"[timeout] what " + std::string(to_string(code)) + " says", code};
    auto summary = (*client)->generate(r, [](const TokenChunk&) { return true; });
    REQUIRE_FALSE(summary);
    CHECK(summary.code() == code);
    CHECK(summary.error().message == service.error.message);
    const Status dropped = (*client)->drop_context(ContextId{0, 7});
    REQUIRE_FALSE(dropped);
    CHECK(dropped.code() == code);
    CHECK(dropped.message() == service.error.message);
  }
}

}  // namespace
}  // namespace starmesh
