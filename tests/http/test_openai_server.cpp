// The HTTP door in process, over a scripted service: answers whole and streamed, stop
// sequences, every error status, Bearer auth, a client that goes away, the limits.
#include <doctest/doctest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "http/scripted_service.hpp"
#include "starmesh/http/openai_server.hpp"
#include "support/http_client.hpp"

using namespace starmesh;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

struct Door {
  test::ScriptedService service;
  std::unique_ptr<http::OpenAiServer> server;
  explicit Door(http::OpenAiServerOptions o = {}) {
    if (o.model.empty()) o.model = "tiny";
    auto s = http::OpenAiServer::start(service, "127.0.0.1:0", std::move(o));
    REQUIRE_MESSAGE(s, (s ? "" : s.error().message));
    server = std::move(*s);
  }
  httplib::Client client(const std::string& token = {}) const {
    httplib::Client c("127.0.0.1", server->port());
    c.set_read_timeout(10, 0);
    if (!token.empty()) c.set_bearer_token_auth(token);
    return c;
  }
  httplib::Result post(const std::string& path, const std::string& body, const std::string& token = {}) const {
    return client(token).Post(path, body, "application/json");
  }
};

const std::string kPrompt = R"({"model": "tiny", "prompt": "hi")";

// The JSON events of a server-sent event stream, and whether it ended with [DONE].
std::vector<json> events(const std::string& body, bool& done) {
  std::vector<json> out;
  done = false;
  for (size_t at = 0; (at = body.find("data: ", at)) != std::string::npos;) {
    const size_t end = body.find("\n\n", at);
    const std::string data = body.substr(at + 6, end - at - 6);
    if (data == "[DONE]")
      done = true;
    else
      out.push_back(json::parse(data));
    at = end;
  }
  return out;
}

std::string error_code(const httplib::Result& r) { return json::parse(r->body)["error"]["code"]; }

// Waits (up to 5 s) for `cond`.
template <class Cond>
bool eventually(Cond cond) {
  for (int i = 0; i < 500 && !cond(); ++i) std::this_thread::sleep_for(10ms);
  return cond();
}

}  // namespace

TEST_CASE("a completion, whole: text, finish reason, usage, the starmesh object") {
  Door d;
  auto r = d.post("/v1/completions", kPrompt + R"(, "max_tokens": 9, "starmesh": {"context": "doc"}})");
  REQUIRE(r);
  CHECK(r->status == 200);
  auto body = json::parse(r->body);
  CHECK(body["object"] == "text_completion");
  CHECK(body["model"] == "tiny");
  CHECK(body["choices"][0]["text"] == "Hello world");
  CHECK(body["choices"][0]["finish_reason"] == "stop");
  CHECK(body["usage"]["prompt_tokens"] == 13);
  CHECK(body["usage"]["completion_tokens"] == 4);
  CHECK(body["usage"]["total_tokens"] == 17);
  CHECK(body["starmesh"]["mode"] == "star");
  CHECK(body["starmesh"]["hosts"] == 2);
  CHECK(body["starmesh"]["context_id"].is_null());
  const GenerateRequest seen = d.service.last();
  CHECK(seen.context_text == "doc");
  CHECK(seen.query_text == "hi");
  CHECK(seen.max_new_tokens == 9);
}

TEST_CASE("a completion, streamed: one event per chunk, the finish, usage on request, then DONE") {
  Door d;
  d.service.ending = StopReason::max_tokens;
  auto r = d.post("/v1/completions", kPrompt + R"(, "stream": true, "stream_options": {"include_usage": true}})");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->get_header_value("Content-Type") == "text/event-stream");
  bool done = false;
  auto ev = events(r->body, done);
  CHECK(done);
  // Chunks that arrive together go out as one event: count text, not events.
  REQUIRE(ev.size() >= 3);
  std::string text;
  for (size_t i = 0; i + 2 < ev.size(); ++i) text += ev[i]["choices"][0]["text"].get<std::string>();
  CHECK(text == "Hello world");
  const json& last = ev[ev.size() - 2];
  CHECK(last["choices"][0]["finish_reason"] == "length");
  CHECK(last["starmesh"]["mode"] == "global");
  CHECK(ev.back()["choices"].empty());
  CHECK(ev.back()["usage"]["completion_tokens"] == 4);
}

TEST_CASE("chat through the injected renderer: role first, then content deltas") {
  http::OpenAiServerOptions o;
  o.chat = [](const std::vector<http::ChatTurn>& turns) -> Expected<http::ChatText> {
    return http::ChatText{"<ctx>" + turns.front().content, "<q>" + turns.back().content};
  };
  Door d(std::move(o));
  const std::string chat = R"({"model": "tiny", "messages": [{"role": "system", "content": "s"},
                              {"role": "user", "content": "u"}])";
  auto whole = d.post("/v1/chat/completions", chat + "}");
  REQUIRE(whole);
  CHECK(whole->status == 200);
  auto body = json::parse(whole->body);
  CHECK(body["object"] == "chat.completion");
  CHECK(body["choices"][0]["message"]["role"] == "assistant");
  CHECK(body["choices"][0]["message"]["content"] == "Hello world");
  CHECK(d.service.last().context_text == "<ctx>s");
  CHECK(d.service.last().query_text == "<q>u");
  CHECK_FALSE(d.service.last().add_bos);

  auto streamed = d.post("/v1/chat/completions", chat + R"(, "stream": true})");
  REQUIRE(streamed);
  bool done = false;
  auto ev = events(streamed->body, done);
  CHECK(done);
  REQUIRE(ev.size() >= 3);
  CHECK(ev[0]["object"] == "chat.completion.chunk");
  CHECK(ev[0]["choices"][0]["delta"]["role"] == "assistant");
  std::string text;
  for (size_t i = 1; i + 1 < ev.size(); ++i) text += ev[i]["choices"][0]["delta"]["content"].get<std::string>();
  CHECK(text == "Hello world");
  CHECK(ev.back()["choices"][0]["finish_reason"] == "stop");
  CHECK(ev.back()["choices"][0]["delta"].empty());
}

TEST_CASE("chat without a template is 404") {
  Door d;
  auto r = d.post("/v1/chat/completions", R"({"model": "tiny", "messages": [{"role": "user", "content": "u"}]})");
  REQUIRE(r);
  CHECK(r->status == 404);
}

TEST_CASE("a stop sequence across chunks ends the answer there and stops the generation") {
  Door d;
  d.service.chunks = {"Hel", "lo", " wor", "ld", " and", " more"};
  d.service.delay = 20ms;
  auto whole = d.post("/v1/completions", kPrompt + R"(, "stop": ["lo w"]})");
  REQUIRE(whole);
  auto body = json::parse(whole->body);
  CHECK(body["choices"][0]["text"] == "Hel");
  CHECK(body["choices"][0]["finish_reason"] == "stop");
  CHECK(eventually([&] { return d.service.cancelled == 1; }));

  auto streamed = d.post("/v1/completions", kPrompt + R"(, "stream": true, "stop": "ld"})");
  REQUIRE(streamed);
  bool done = false;
  auto ev = events(streamed->body, done);
  CHECK(done);
  std::string text;
  for (auto& e : ev) text += e["choices"][0]["text"].get<std::string>();
  CHECK(text == "Hello wor");
  CHECK(ev.back()["choices"][0]["finish_reason"] == "stop");
  CHECK(eventually([&] { return d.service.cancelled == 2; }));
}

TEST_CASE("the service's refusals keep their status, streamed or not") {
  Door d;
  const std::pair<ErrorCode, int> cases[] = {{ErrorCode::overloaded, 429},  {ErrorCode::not_found, 404},
                                             {ErrorCode::unavailable, 503}, {ErrorCode::invalid_argument, 400},
                                             {ErrorCode::timeout, 504},     {ErrorCode::internal, 500}};
  for (auto [code, status] : cases) {
    d.service.fail = make_error(code, "scripted");
    for (const char* stream : {"false", "true"}) {
      auto r = d.post("/v1/completions", kPrompt + R"(, "stream": )" + stream + "}");
      REQUIRE(r);
      CHECK(r->status == status);
      CHECK(error_code(r) == to_string(code));
      if (code == ErrorCode::overloaded) CHECK(r->get_header_value("Retry-After") == "1");
    }
  }
}

TEST_CASE(
    "the door's own refusals: bad body 400, wrong model 404, unknown route 404, wrong method 405, too large 413") {
  http::OpenAiServerOptions o;
  o.max_body_bytes = 4096;
  Door d(std::move(o));
  auto bad = d.post("/v1/completions", kPrompt + R"(, "temperature": 9})");
  REQUIRE(bad);
  CHECK(bad->status == 400);
  CHECK(json::parse(bad->body)["error"]["param"] == "temperature");
  auto model = d.post("/v1/completions", R"({"model": "gpt-4", "prompt": "x"})");
  REQUIRE(model);
  CHECK(model->status == 404);
  CHECK(json::parse(model->body)["error"]["param"] == "model");
  auto route = d.client().Get("/v1/engines");
  REQUIRE(route);
  CHECK(route->status == 404);
  CHECK(error_code(route) == "not_found");
  auto method = d.client().Get("/v1/completions");
  REQUIRE(method);
  CHECK(method->status == 405);
  auto large = d.post("/v1/completions", kPrompt + R"(, "user": ")" + std::string(8192, 'x') + R"("})");
  REQUIRE(large);
  CHECK(large->status == 413);
  CHECK(d.service.running == 0);
}

TEST_CASE("Bearer tokens: none or wrong is 401, the right one passes and is the tenant") {
  http::OpenAiServerOptions o;
  o.tokens = {"tok-1", "tok-2"};
  Door d(std::move(o));
  auto none = d.post("/v1/completions", kPrompt + "}");
  REQUIRE(none);
  CHECK(none->status == 401);
  CHECK(error_code(none) == "unauthenticated");
  CHECK(none->get_header_value("WWW-Authenticate") == "Bearer");
  auto wrong = d.post("/v1/completions", kPrompt + "}", "tok-3");
  REQUIRE(wrong);
  CHECK(wrong->status == 401);
  auto models = d.client().Get("/v1/models");
  REQUIRE(models);
  CHECK(models->status == 401);
  auto right = d.post("/v1/completions", kPrompt + "}", "tok-2");
  REQUIRE(right);
  CHECK(right->status == 200);
  CHECK(d.service.last().tenant == "tok-2");
  auto listed = d.client("tok-1").Get("/v1/models");
  REQUIRE(listed);
  CHECK(json::parse(listed->body)["data"][0]["id"] == "tiny");
  CHECK(d.client("tok-1").Get("/v1/models/tiny")->status == 200);
  CHECK(d.client("tok-1").Get("/v1/models/other")->status == 404);
  auto drop = d.client("tok-1").Delete("/v1/starmesh/contexts/0123456789abcdef0123456789abcdef");
  REQUIRE(drop);
  CHECK(drop->status == 404);
  CHECK(d.service.last().tenant == "tok-1");
}

TEST_CASE("a client that goes away cancels its generation, streamed or not") {
  Door d;
  d.service.chunks = std::vector<std::string>(1000, "x");
  d.service.delay = 5ms;
  for (const char* stream : {"true", "false"}) {
    const int before = d.service.cancelled;
    const int fd = test::connect_loopback(d.server->port());
    REQUIRE(fd >= 0);
    const std::string body = kPrompt + R"(, "max_tokens": 1000, "stream": )" + stream + "}";
    const std::string req =
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: " +
        std::to_string(body.size()) + "\r\n\r\n" + body;
    REQUIRE(::send(fd, req.data(), req.size(), 0) == ssize_t(req.size()));
    REQUIRE(eventually([&] { return d.service.running == 1; }));
    std::this_thread::sleep_for(50ms);
    ::close(fd);
    CHECK(eventually([&] { return d.service.cancelled == before + 1 && d.service.running == 0; }));
  }
  CHECK(d.server->disconnects() >= 1);
  CHECK(eventually([&] { return d.server->active_requests() == 0; }));
}

TEST_CASE("connections past the cap get 429 at once, and stop() ends a generation in flight") {
  http::OpenAiServerOptions o;
  o.max_threads = 1;
  o.max_connections = 1;
  Door d(std::move(o));
  d.service.chunks = std::vector<std::string>(100000, "x");
  d.service.delay = 5ms;
  std::thread streaming([&] { d.post("/v1/completions", kPrompt + R"(, "max_tokens": 100000, "stream": true})"); });
  REQUIRE(eventually([&] { return d.service.running == 1; }));
  auto refused = d.post("/v1/completions", kPrompt + "}");
  REQUIRE(refused);
  CHECK(refused->status == 429);
  CHECK(d.server->refused_connections() == 1);
  d.server->stop();
  streaming.join();
  CHECK(eventually([&] { return d.service.running == 0; }));
  CHECK_FALSE(d.server->serving());
}
