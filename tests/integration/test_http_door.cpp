// The router's HTTP door on a real mesh (router + 2 worker processes on 127.0.0.1), with curl
// and the official OpenAI Node SDK (pinned in tests/http/sdk, installed by tools/setup.sh) as
// clients: completions streamed and not with the single-process engine's tokens, Star
// Attention and a kept context asked twice through the "starmesh" extension object, every
// error status, Bearer auth, and a client that goes away (its KV is freed at once).
#include <doctest/doctest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "integration/process_mesh.hpp"
#include "starmesh/model/chat_template.hpp"
#include "starmesh/model/tokenizer.hpp"
#include "support/http_client.hpp"

using namespace starmesh;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

const std::string kSdkDir = std::string(STARMESH_TESTDATA_DIR) + "/http-sdk";
const std::string kModel = std::filesystem::path(STARMESH_GOLDEN_MODEL_DIR).filename().string();

struct Shell {
  int status = -1;
  std::string out;
};
Shell shell(const std::string& cmd, int limit_seconds = 60) {
  Shell r;
  FILE* p = popen(("timeout " + std::to_string(limit_seconds) + " " + cmd).c_str(), "r");
  if (!p) return r;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) r.out.append(buf, n);
  const int s = pclose(p);
  r.status = WIFEXITED(s) ? WEXITSTATUS(s) : -1;
  return r;
}

// Concatenated text of a server-sent event stream (completions or chat), and whether it ended
// with [DONE].
std::string sse_text(const std::string& body, bool& done) {
  std::string text;
  done = false;
  for (size_t at = 0; (at = body.find("data: ", at)) != std::string::npos;) {
    const size_t end = body.find("\n\n", at);
    const std::string data = body.substr(at + 6, end - at - 6);
    at = end;
    if (data == "[DONE]") {
      done = true;
      continue;
    }
    const json e = json::parse(data);
    if (e["choices"].empty()) continue;
    const json& c = e["choices"][0];
    if (c.contains("text")) text += c["text"].get<std::string>();
    if (c.contains("delta") && c["delta"].contains("content")) text += c["delta"]["content"].get<std::string>();
  }
  return text;
}

struct Expected_ {
  std::string text;
  size_t tokens = 0;
};

struct HttpMesh : test::ProcessMesh {
  Tokenizer tok = Tokenizer::load(std::string(STARMESH_GOLDEN_MODEL_DIR) + "/tokenizer.json").value();
  const std::string token = "tok-http-door-test";
  uint16_t port = 0;
  std::string url;

  void start_http(int workers, std::vector<std::string> args = {}, std::vector<int64_t> capacities = {}) {
    std::ofstream(logs + "/tokens") << "# the HTTP door's tokens\n" << token << "\n";
    const std::string port_file = logs + "/http.port";
    args.insert(args.end(),
                {"--http-listen", "127.0.0.1:0", "--http-port-file", port_file, "--api-tokens-file", logs + "/tokens"});
    start("ucx-shm", workers, std::move(capacities), std::move(args), true);
    std::string p;
    for (int i = 0; i < 100 && p.empty(); ++i) {
      std::ifstream(port_file) >> p;
      if (p.empty()) std::this_thread::sleep_for(50ms);
    }
    REQUIRE_MESSAGE(!p.empty(), "the router wrote no HTTP port:\n" << mesh->log_tail());
    port = uint16_t(std::stoi(p));
    url = "http://127.0.0.1:" + p;
  }

  // curl: the status and the body of one request (the body from a file: no shell quoting).
  std::pair<int, std::string> curl(const std::string& path, const json& body = nullptr,
                                   const std::string& bearer = "default", const std::string& method = "") {
    static int n = 0;
    const std::string in = logs + "/curl-in-" + std::to_string(++n) + ".json", out = in + ".out";
    std::string cmd = "curl -sS -N -o " + out + " -w '%{http_code}'";
    if (bearer == "default")
      cmd += " -H 'Authorization: Bearer " + token + "'";
    else if (!bearer.empty())
      cmd += " -H 'Authorization: Bearer " + bearer + "'";
    if (!method.empty()) cmd += " -X " + method;
    if (!body.is_null()) {
      std::ofstream(in) << body.dump();
      cmd += " -H 'Content-Type: application/json' --data-binary @" + in;
    }
    const Shell r = shell(cmd + " " + url + path);
    std::ifstream f(out);
    return {std::atoi(r.out.c_str()), std::string(std::istreambuf_iterator<char>(f), {})};
  }

  // The OpenAI SDK: runs `cases` (tests/http/sdk/openai_door.mjs) and returns its results by name.
  std::map<std::string, json> sdk(const json& cases) {
    const std::string plan = logs + "/sdk-plan.json";
    std::ofstream(plan) << json{{"cases", cases}}.dump();
    const Shell r =
        shell("env STARMESH_SDK_DIR=" + kSdkDir + " STARMESH_HTTP_URL=" + url + "/v1 STARMESH_HTTP_TOKEN=" + token +
              " node " + STARMESH_SOURCE_DIR + "/tests/http/sdk/openai_door.mjs " + plan + " 2>&1");
    REQUIRE_MESSAGE(r.status == 0, r.out);
    const json all = json::parse(r.out);
    CHECK(all["sdk"] == "5.23.2");
    std::map<std::string, json> by_name;
    for (const json& x : all["results"]) by_name[x["name"]] = x;
    return by_name;
  }

  // The single-process engine's answer. Global: the whole prompt (with BOS) is the input.
  Expected_ global_answer(const std::string& prompt, int max_new) {
    const auto ids = tok.encode(prompt, true);
    const std::vector<int32_t> ctx(ids.begin(), ids.end() - 1), last{ids.back()};
    return answer(global(ctx, last, max_new).ids);
  }
  // Star Attention: the document (with BOS) in blocks over `hosts`, the prompt as the query.
  Expected_ star_answer(const std::string& doc, const std::string& prompt, int64_t block, int hosts, int max_new) {
    return answer(star(tok.encode(doc, true), tok.encode(prompt, false), block, hosts, max_new).ids);
  }
  Expected_ answer(const std::vector<int32_t>& ids) { return {tok.decode(ids).value(), ids.size()}; }

  int64_t reserved() {
    const auto members = mesh->client().members().value();
    int64_t sum = 0;
    for (const auto& w : members) sum += w.reserved;
    return sum;
  }
  template <class Cond>
  bool eventually(Cond cond, std::chrono::milliseconds limit = 5000ms) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (!cond() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(10ms);
    return cond();
  }

  // A raw connection that sends one completion and keeps reading nothing back: the test
  // decides when its client goes away (closes it).
  int open_completion(const json& body) {
    const int fd = test::connect_loopback(port);
    REQUIRE(fd >= 0);
    const std::string b = body.dump();
    const std::string req = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token +
                            "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(b.size()) +
                            "\r\n\r\n" + b;
    REQUIRE(::send(fd, req.data(), req.size(), 0) == ssize_t(req.size()));
    return fd;
  }
  double router_metric(const std::string& series) {
    return test::metric_value(test::http_get(mesh->metrics_ports()[0], "/metrics").body, series);
  }
};

// `base` with `patch` merged in (RFC 7386).
json with(json base, const json& patch) {
  base.merge_patch(patch);
  return base;
}

// A document of `words` words (about 2.8 tokens each for the golden model).
std::string document(int words) {
  std::string d;
  for (int i = 0; i < words; ++i) d += " w" + std::to_string(i % 97);
  return d;
}

}  // namespace

TEST_CASE_FIXTURE(HttpMesh,
                  "HTTP door on router + 2 workers: curl and the OpenAI SDK get the engine's tokens, streamed or not") {
  start_http(2);
  const Expected_ want = global_answer("Hello there, mesh", 12);

  auto [status, body] =
      curl("/v1/completions", {{"model", kModel}, {"prompt", "Hello there, mesh"}, {"max_tokens", 12}});
  REQUIRE_MESSAGE(status == 200, body);
  const json whole = json::parse(body);
  CHECK(whole["choices"][0]["text"] == want.text);
  CHECK(whole["usage"]["completion_tokens"] == want.tokens);
  CHECK(whole["usage"]["prompt_tokens"] == tok.encode("Hello there, mesh", true).size());
  CHECK(whole["starmesh"]["mode"] == "global");

  auto [s2, events] = curl("/v1/completions",
                           {{"model", kModel}, {"prompt", "Hello there, mesh"}, {"max_tokens", 12}, {"stream", true}});
  REQUIRE(s2 == 200);
  bool done = false;
  CHECK(sse_text(events, done) == want.text);
  CHECK(done);

  auto [s3, models] = curl("/v1/models");
  CHECK(s3 == 200);
  CHECK(json::parse(models)["data"][0]["id"] == kModel);

  // The SDK: the same answers; Star Attention over a document through the extension object.
  const std::string doc = document(500), question = " Which word came first?";
  const Expected_ star_want = star_answer(doc, question, 128, 2, 10);
  auto got = sdk(json::array({{{"name", "models"}, {"kind", "models"}},
                              {{"name", "whole"},
                               {"kind", "completion"},
                               {"body", {{"model", kModel}, {"prompt", "Hello there, mesh"}, {"max_tokens", 12}}}},
                              {{"name", "stream"},
                               {"kind", "completion"},
                               {"body",
                                {{"model", kModel},
                                 {"prompt", "Hello there, mesh"},
                                 {"max_tokens", 12},
                                 {"stream", true},
                                 {"stream_options", {{"include_usage", true}}}}}},
                              {{"name", "star"},
                               {"kind", "completion"},
                               {"body",
                                {{"model", kModel},
                                 {"prompt", question},
                                 {"max_tokens", 10},
                                 {"starmesh", {{"context", doc}, {"block_size", 128}, {"mode", "star"}}}}}},
                              {{"name", "chat"},
                               {"kind", "chat"},
                               {"body", {{"model", kModel}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}}}}}));
  CHECK(got["models"]["models"] == json::array({kModel}));
  CHECK(got["whole"]["text"] == want.text);
  CHECK(got["whole"]["finish_reason"] == (want.tokens == 12 ? "length" : "stop"));
  CHECK(got["stream"]["text"] == want.text);
  CHECK(got["stream"]["usage"]["completion_tokens"] == want.tokens);
  CHECK(got["star"]["text"] == star_want.text);
  CHECK(got["star"]["starmesh"]["mode"] == "star");
  CHECK(got["star"]["starmesh"]["hosts"] == 2);
  CHECK(got["star"]["starmesh"]["context_tokens"] == tok.encode(doc, true).size());
  // The golden model has no chat template of its own: chat says so (404).
  CHECK(got["chat"]["error"]["status"] == 404);
}

TEST_CASE_FIXTURE(HttpMesh, "HTTP door: a kept context asked twice through the extension object, then dropped") {
  start_http(2);
  const std::string doc = document(400), q1 = " First question?", q2 = " Second question?";
  auto kept = sdk(json::array({{{"name", "keep"},
                                {"kind", "completion"},
                                {"body",
                                 {{"model", kModel},
                                  {"prompt", q1},
                                  {"max_tokens", 8},
                                  {"starmesh", {{"context", doc}, {"block_size", 128}, {"keep_context", true}}}}}}}));
  const json& k = kept["keep"];
  REQUIRE_MESSAGE(k["starmesh"]["context_id"].is_string(), k.dump());
  const std::string id = k["starmesh"]["context_id"];
  CHECK(k["text"] == star_answer(doc, q1, 128, 2, 8).text);

  const json ask = {{"model", kModel}, {"prompt", q2}, {"max_tokens", 8}, {"starmesh", {{"context_id", id}}}};
  auto asked = sdk(json::array({{{"name", "a"}, {"kind", "completion"}, {"body", ask}},
                                {{"name", "b"}, {"kind", "completion"}, {"body", ask}}}));
  const Expected_ want2 = star_answer(doc, q2, 128, 2, 8);
  CHECK(asked["a"]["text"] == want2.text);
  CHECK(asked["b"]["text"] == want2.text);
  CHECK(asked["a"]["starmesh"]["context_id"] == id);
  CHECK(asked["b"]["starmesh"]["phase1_seconds"].get<double>() < k["starmesh"]["phase1_seconds"].get<double>());

  auto [dropped, body] = curl("/v1/starmesh/contexts/" + id, nullptr, "default", "DELETE");
  CHECK_MESSAGE(dropped == 200, body);
  auto [gone, why] = curl("/v1/completions", ask);
  CHECK(gone == 404);
  CHECK(json::parse(why)["error"]["code"] == "not_found");
}

TEST_CASE_FIXTURE(HttpMesh,
                  "HTTP door error statuses on a real mesh: 400, 401, 404, 429 when the KV is full, 503 without "
                  "workers, and a client that goes away frees its KV") {
  start_http(2, {"--queue-timeout", "0"}, {2048, 2048});
  const json plain = {{"model", kModel}, {"prompt", "Q"}, {"max_tokens", 4}};

  auto [s400, b400] = curl("/v1/completions", with(plain, {{"n", 2}}));
  CHECK(s400 == 400);
  CHECK(json::parse(b400)["error"]["param"] == "n");
  CHECK(curl("/v1/completions", plain, "").first == 401);
  CHECK(curl("/v1/completions", plain, "not-a-token").first == 401);
  CHECK(curl("/v1/embeddings", plain).first == 404);
  auto errors =
      sdk(json::array({{{"name", "400"}, {"kind", "completion"}, {"body", with(plain, {{"temperature", 3}})}},
                       {{"name", "401"}, {"kind", "completion"}, {"api_key", "wrong"}, {"body", plain}},
                       {{"name", "404"},
                        {"kind", "completion"},
                        {"body", with(plain, {{"starmesh", {{"context_id", "0123456789abcdef0123456789abcdef"}}}})}}}));
  CHECK(errors["400"]["error"]["status"] == 400);
  CHECK(errors["400"]["error"]["code"] == "invalid_argument");
  CHECK(errors["401"]["error"]["status"] == 401);
  CHECK(errors["404"]["error"]["status"] == 404);
  CHECK(errors["404"]["error"]["code"] == "not_found");

  // A long streamed answer holds ~1900 KV tokens on one worker; a document that needs more
  // than the rest (but fits an idle mesh) is refused at once (no queue): 429.
  const int held = open_completion({{"model", kModel}, {"prompt", "Q"}, {"max_tokens", 1900}, {"stream", true}});
  REQUIRE(eventually([&] { return reserved() > 1900; }));
  const json big = {{"model", kModel},
                    {"prompt", "?"},
                    {"max_tokens", 4},
                    {"starmesh", {{"context", document(1180)}, {"block_size", 256}, {"anchor_size", 0}}}};
  auto busy = sdk(json::array({{{"name", "429"}, {"kind", "completion"}, {"body", big}}}));
  CHECK_MESSAGE(busy["429"]["error"]["status"] == 429, busy["429"].dump());
  CHECK(busy["429"]["error"]["code"] == "overloaded");

  // The streaming client goes away: its request is cancelled and its KV freed at once.
  const double cancelled = router_metric("starmesh_requests_total{outcome=\"cancelled\"}");
  ::close(held);
  CHECK(eventually([&] { return reserved() == 0; }, 1500ms));
  CHECK(eventually([&] { return router_metric("starmesh_requests_total{outcome=\"cancelled\"}") == cancelled + 1; }));
  // The document fits now.
  auto fits = sdk(json::array({{{"name", "ok"}, {"kind", "completion"}, {"body", big}}}));
  CHECK_MESSAGE(fits["ok"]["usage"]["completion_tokens"] == 4, fits["ok"].dump());

  // A client waiting for a whole answer goes away too; and one of the SDK aborts its stream.
  const int waiting = open_completion({{"model", kModel}, {"prompt", "Q"}, {"max_tokens", 1900}});
  REQUIRE(eventually([&] { return reserved() > 1900; }));
  ::close(waiting);
  CHECK(eventually([&] { return reserved() == 0; }, 1500ms));
  CHECK(eventually([&] { return router_metric("starmesh_requests_total{outcome=\"cancelled\"}") == cancelled + 2; }));
  auto aborted =
      sdk(json::array({{{"name", "abort"},
                        {"kind", "completion"},
                        {"abort_after_first", true},
                        {"body", {{"model", kModel}, {"prompt", "Q"}, {"max_tokens", 1900}, {"stream", true}}}}}));
  CHECK(aborted["abort"]["aborted"] == true);
  CHECK(eventually([&] { return reserved() == 0; }, 1500ms));
  CHECK(eventually([&] { return router_metric("starmesh_requests_total{outcome=\"cancelled\"}") == cancelled + 3; }));

  // No workers: 503, while the door itself is healthy.
  REQUIRE(mesh->signal_worker(0, SIGKILL));
  REQUIRE(mesh->signal_worker(1, SIGKILL));
  REQUIRE(eventually([&] { return mesh->client().members().value().empty(); }, 15000ms));
  auto [s503, b503] = curl("/v1/completions", plain);
  CHECK(s503 == 503);
  CHECK(json::parse(b503)["error"]["code"] == "unavailable");
  CHECK(test::http_get(mesh->metrics_ports()[0], "/healthz").status == 200);
}

TEST_CASE_FIXTURE(HttpMesh,
                  "HTTP door chat with the Llama 3.1 template: the engine's tokens, global and star, BOS once") {
  const std::string config = std::string(STARMESH_TESTDATA_DIR) + "/llama3_1/tokenizer_config.json";
  start_http(2, {"--chat-template", config});
  // What the door must send: the template's rendering, split before the last user message.
  const ChatTemplate chat = ChatTemplate::from_tokenizer_config(config).value();
  const std::string doc = "Answer from this document:" + document(300), question = "Which word came first?";
  const auto split = split_chat(chat, {{"system", doc}, {"user", question}}, {}).value();
  const auto ctx = tok.encode(split.context, false), query = tok.encode(split.query, false);
  REQUIRE(ctx.size() > 256);
  CHECK(ctx[0] == tok.bos_id().value());
  CHECK(ctx[1] != ctx[0]);  // the template's BOS, and no second one
  const Expected_ global_want = answer(global(ctx, query, 10).ids);
  const Expected_ star_want = answer(star(ctx, query, 128, 2, 10).ids);

  const json messages = {{{"role", "system"}, {"content", doc}}, {{"role", "user"}, {"content", question}}};
  const json body = {{"model", kModel}, {"messages", messages}, {"max_tokens", 10}};
  auto [status, whole] = curl("/v1/chat/completions", body);
  REQUIRE_MESSAGE(status == 200, whole);
  const json w = json::parse(whole);
  CHECK(w["object"] == "chat.completion");
  CHECK(w["choices"][0]["message"]["role"] == "assistant");
  CHECK(w["choices"][0]["message"]["content"] == global_want.text);
  CHECK(w["usage"]["prompt_tokens"] == ctx.size() + query.size());
  CHECK(w["starmesh"]["mode"] == "global");

  auto [s2, events] = curl("/v1/chat/completions", with(body, {{"stream", true}}));
  REQUIRE(s2 == 200);
  bool done = false;
  CHECK(sse_text(events, done) == global_want.text);
  CHECK(done);

  const json star = with(body, {{"starmesh", {{"mode", "star"}, {"block_size", 128}}}});
  auto got = sdk(json::array({{{"name", "global"}, {"kind", "chat"}, {"body", body}},
                              {{"name", "star"}, {"kind", "chat"}, {"body", star}},
                              {{"name", "star-stream"}, {"kind", "chat"}, {"body", with(star, {{"stream", true}})}},
                              {{"name", "bad-role"},
                               {"kind", "chat"},
                               {"body", with(body, {{"messages", {{{"role", "tool"}, {"content", "x"}}}}})}}}));
  CHECK(got["global"]["text"] == global_want.text);
  CHECK(got["global"]["role"] == "assistant");
  CHECK(got["star"]["text"] == star_want.text);
  CHECK(got["star"]["starmesh"]["hosts"] == 2);
  CHECK(got["star-stream"]["text"] == star_want.text);
  CHECK(got["star-stream"]["role"] == "assistant");
  CHECK(got["star-stream"]["object"] == "chat.completion.chunk");
  CHECK(got["bad-role"]["error"]["status"] == 400);

  // A kept conversation: the second ask sends only the query part.
  auto kept = sdk(json::array(
      {{{"name", "keep"}, {"kind", "chat"}, {"body", with(star, {{"starmesh", {{"keep_context", true}}}})}}}));
  REQUIRE_MESSAGE(kept["keep"]["starmesh"]["context_id"].is_string(), kept["keep"].dump());
  const json again = with(body, {{"starmesh", {{"context_id", kept["keep"]["starmesh"]["context_id"]}}}});
  auto asked = sdk(json::array({{{"name", "again"}, {"kind", "chat"}, {"body", again}}}));
  CHECK(kept["keep"]["text"] == star_want.text);
  CHECK(asked["again"]["text"] == star_want.text);
  CHECK(asked["again"]["starmesh"]["query_tokens"] == query.size());
}
