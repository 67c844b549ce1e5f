// The OpenAI request parser: every field bounded, unsupported ones refused with the field
// named, and the rule that splits phase-1 context from the query.
#include <doctest/doctest.h>

#include <string>

#include "starmesh/http/openai_request.hpp"

using namespace starmesh;
using namespace starmesh::http;

namespace {

Expected<OpenAiRequest> parse(const std::string& body, Endpoint e = Endpoint::completions) {
  std::string param;
  return parse_openai_request(e, body, param);
}

// The field a refusal names.
std::string refused_param(const std::string& body, Endpoint e = Endpoint::completions) {
  std::string param;
  auto r = parse_openai_request(e, body, param);
  REQUIRE_FALSE(r);
  CHECK(r.code() == ErrorCode::invalid_argument);
  return param;
}

std::string completion(const std::string& extra) {
  return R"({"model": "m", "prompt": "hi")" + (extra.empty() ? "" : ", " + extra) + "}";
}

}  // namespace

TEST_CASE("a completion request with every supported field") {
  auto r = parse(completion(
      R"("max_tokens": 7, "temperature": 0.5, "top_p": 0.9, "seed": 42, "stop": ["a", "bc"], "n": 1, "stream": true,
         "stream_options": {"include_usage": true}, "user": "u", "logprobs": null, "presence_penalty": 0,
         "starmesh": {"mode": "star", "block_size": 128, "anchor_size": 0, "max_hosts": 2, "top_k": 5,
                      "keep_context": true, "context": "a long document", "priority": "high"})"));
  REQUIRE_MESSAGE(r, (r ? "" : r.error().message));
  CHECK(r->model == "m");
  CHECK(r->prompt == "hi");
  CHECK(r->max_tokens == 7);
  CHECK(r->sampling.temperature == doctest::Approx(0.5));
  CHECK(r->sampling.top_p == doctest::Approx(0.9));
  CHECK(r->sampling.seed == 42);
  CHECK(r->sampling.top_k == 5);
  CHECK(r->stop == std::vector<std::string>{"a", "bc"});
  CHECK(r->stream);
  CHECK(r->include_usage);
  CHECK(r->starmesh.mode == AttentionMode::star);
  CHECK(r->starmesh.block_size == 128);
  CHECK(r->starmesh.anchor_size == 0);
  CHECK(r->starmesh.max_hosts == 2);
  CHECK(r->starmesh.keep_context);
  CHECK(*r->starmesh.context == "a long document");
  CHECK(r->starmesh.priority == Priority::high);
  auto bad = parse(completion(R"("starmesh": {"priority": "urgent"})"));
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("'starmesh.priority' must be") != std::string::npos);
}

TEST_CASE("defaults: OpenAI's 16 tokens for completions, 256 for chat, greedy") {
  auto c = parse(completion(""));
  REQUIRE(c);
  CHECK(c->max_tokens == kDefaultCompletionTokens);
  CHECK(c->sampling.temperature == 0.0f);
  CHECK_FALSE(c->stream);
  auto chat = parse(R"({"model": "m", "messages": [{"role": "user", "content": "hi"}]})", Endpoint::chat);
  REQUIRE(chat);
  CHECK(chat->max_tokens == kDefaultChatTokens);
  CHECK(chat->messages.size() == 1);
}

TEST_CASE("prompts: a string, one string in an array, or token ids, never a batch") {
  auto one = parse(R"({"model": "m", "prompt": ["only"]})");
  REQUIRE(one);
  CHECK(one->prompt == "only");
  auto ids = parse(R"({"model": "m", "prompt": [1, 2, 3]})");
  REQUIRE(ids);
  CHECK(ids->prompt_ids == std::vector<int32_t>{1, 2, 3});
  CHECK(refused_param(R"({"model": "m", "prompt": ["a", "b"]})") == "prompt");
  CHECK(refused_param(R"({"model": "m", "prompt": [1, -2]})") == "prompt");
  CHECK(refused_param(R"({"model": "m", "prompt": 5})") == "prompt");
  CHECK(refused_param(R"({"model": "m"})") == "prompt");
  CHECK(refused_param(R"({"prompt": "x"})") == "model");
}

TEST_CASE("numbers out of range are refused, naming the field") {
  CHECK(refused_param(completion(R"("n": 2)")) == "n");
  CHECK(refused_param(completion(R"("best_of": 3)")) == "best_of");
  CHECK(refused_param(completion(R"("temperature": 2.5)")) == "temperature");
  CHECK(refused_param(completion(R"("temperature": -0.1)")) == "temperature");
  CHECK(refused_param(completion(R"("top_p": 0)")) == "top_p");
  CHECK(refused_param(completion(R"("top_p": 1.01)")) == "top_p");
  CHECK(refused_param(completion(R"("max_tokens": -1)")) == "max_tokens");
  CHECK(refused_param(completion(R"("max_tokens": 1048577)")) == "max_tokens");
  CHECK(refused_param(completion(R"("max_tokens": 1e30)")) == "max_tokens");
  CHECK(refused_param(completion(R"("max_tokens": 3.5)")) == "max_tokens");
  CHECK(refused_param(completion(R"("max_tokens": 99999999999999999999999)")) == "max_tokens");
  CHECK(refused_param(completion(R"("seed": -1)")) == "seed");
  CHECK(refused_param(completion(R"("starmesh": {"block_size": 0})")) == "starmesh.block_size");
  CHECK(refused_param(completion(R"("starmesh": {"anchor_size": -2})")) == "starmesh.anchor_size");
  CHECK(refused_param(completion(R"("starmesh": {"mode": "ring"})")) == "starmesh.mode");
  CHECK(refused_param(completion(R"("starmesh": {"context_id": "xyz"})")) == "starmesh.context_id");
  auto big_seed = parse(completion(R"("seed": 18446744073709551615)"));
  REQUIRE(big_seed);
  CHECK(big_seed->sampling.seed == UINT64_MAX);
}

TEST_CASE("stop: a string or up to 4 non-empty strings") {
  auto one = parse(completion(R"("stop": "\n")"));
  REQUIRE(one);
  CHECK(one->stop == std::vector<std::string>{"\n"});
  CHECK(refused_param(completion(R"("stop": ["a", "b", "c", "d", "e"])")) == "stop");
  CHECK(refused_param(completion(R"("stop": [""])")) == "stop");
  CHECK(refused_param(completion(R"("stop": 3)")) == "stop");
  CHECK(refused_param(completion(R"("stop": [")" + std::string(kMaxStopBytes + 1, 'x') + R"("])")) == "stop");
}

TEST_CASE("unknown or unsupported fields are refused, never ignored") {
  CHECK(refused_param(completion(R"("frobnicate": true)")) == "frobnicate");
  CHECK(refused_param(completion(R"("messages": [])")) == "messages");  // a chat field on completions
  CHECK(refused_param(completion(R"("echo": true)")) == "echo");
  CHECK(refused_param(completion(R"("logprobs": 2)")) == "logprobs");
  CHECK(refused_param(completion(R"("presence_penalty": 0.5)")) == "presence_penalty");
  CHECK(refused_param(completion(R"("logit_bias": {"1": 2})")) == "logit_bias");
  CHECK(refused_param(completion(R"("stream_options": {"include_usage": true})")) == "stream_options");
  CHECK(refused_param(completion(R"("starmesh": {"blocksize": 4})")) == "starmesh.blocksize");
  const std::string chat = R"({"model": "m", "messages": [{"role": "user", "content": "x"}], )";
  CHECK(refused_param(chat + R"("tools": [{"type": "function"}]})", Endpoint::chat) == "tools");
  CHECK(refused_param(chat + R"("response_format": {"type": "json_object"}})", Endpoint::chat) == "response_format");
  CHECK(refused_param(chat + R"("logprobs": true})", Endpoint::chat) == "logprobs");
  CHECK(refused_param(chat + R"("prompt": "x"})", Endpoint::chat) == "prompt");
  auto none = parse(chat + R"("tool_choice": "none", "logprobs": false})", Endpoint::chat);
  CHECK_MESSAGE(none, (none ? "" : none.error().message));
}

TEST_CASE("chat messages: roles, text parts, bounds") {
  auto r = parse(R"({"model": "m", "messages": [
      {"role": "developer", "content": "be brief"},
      {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
      {"role": "assistant", "content": "c", "name": "bot"}]})",
                 Endpoint::chat);
  REQUIRE_MESSAGE(r, (r ? "" : r.error().message));
  REQUIRE(r->messages.size() == 3);
  CHECK(r->messages[0].role == "system");
  CHECK(r->messages[1].content == "ab");
  CHECK(refused_param(R"({"model": "m", "messages": []})", Endpoint::chat) == "messages");
  CHECK(refused_param(R"({"model": "m", "messages": [{"role": "tool", "content": "x"}]})", Endpoint::chat) ==
        "messages");
  CHECK(refused_param(R"({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
                      Endpoint::chat) == "messages");
  CHECK(refused_param(R"({"model": "m", "messages": [{"role": "user"}]})", Endpoint::chat) == "messages");
}

TEST_CASE("hostile bodies: not JSON, not an object, nested too deep") {
  CHECK(refused_param("{") == "");
  CHECK(refused_param("[1, 2]") == "");
  CHECK(refused_param(std::string(100000, '[')) == "");
  CHECK_FALSE(json_depth_within(std::string(kMaxJsonDepth + 1, '{'), kMaxJsonDepth));
  CHECK(json_depth_within(R"({"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["})", 2));
  CHECK(json_depth_within(R"({"a": "\"[[[["})", 1));
}

TEST_CASE("context and query: starmesh.context with the prompt in star mode, else the prompt alone in global") {
  std::string param;
  auto plain = parse(completion(""));
  auto g = to_generate_request(*plain, {}, param);
  REQUIRE(g);
  CHECK(g->mode == AttentionMode::global);
  CHECK(g->context_text.empty());
  CHECK(g->query_text == "hi");
  CHECK(g->add_bos);

  CHECK(g->priority == Priority::normal);

  auto doc =
      parse(completion(R"("max_tokens": 3, "starmesh": {"context": "doc", "keep_context": true, "priority": "low"})"));
  auto s = to_generate_request(*doc, {}, param);
  REQUIRE(s);
  CHECK(s->priority == Priority::low);
  CHECK(s->mode == AttentionMode::star);
  CHECK(s->context_text == "doc");
  CHECK(s->query_text == "hi");
  CHECK(s->keep_context);
  CHECK(s->max_new_tokens == 3);

  auto kept = parse(completion(R"("starmesh": {"context_id": "0123456789abcdef0123456789ABCDEF"})"));
  auto k = to_generate_request(*kept, {}, param);
  REQUIRE(k);
  CHECK(k->mode == AttentionMode::star);
  CHECK(k->context_id.hex() == "0123456789abcdef0123456789abcdef");

  auto refused = [&](const std::string& extra) {
    auto r = parse(completion(extra));
    REQUIRE(r);
    auto out = to_generate_request(*r, {}, param);
    CHECK_FALSE(out);
    return param;
  };
  CHECK(refused(R"("starmesh": {"mode": "star"})") == "starmesh.mode");
  CHECK(refused(R"("starmesh": {"keep_context": true})") == "starmesh.keep_context");
  CHECK(refused(R"("starmesh": {"context": "d", "context_id": "0123456789abcdef0123456789abcdef"})") ==
        "starmesh.context");
  CHECK(refused(R"("starmesh": {"mode": "global", "context_id": "0123456789abcdef0123456789abcdef"})") ==
        "starmesh.mode");
}

TEST_CASE("chat: the renderer's split, global unless asked, no double BOS, the query alone over a kept context") {
  std::vector<ChatTurn> seen;
  ChatRenderer render = [&](const std::vector<ChatTurn>& turns) -> Expected<ChatText> {
    seen = turns;
    return ChatText{"<bos>system+history", "user turn+prompt"};
  };
  std::string param;
  auto r = parse(R"({"model": "m", "messages": [{"role": "user", "content": "q"}]})", Endpoint::chat);
  auto g = to_generate_request(*r, render, param);
  REQUIRE(g);
  CHECK(seen.size() == 1);
  CHECK(g->mode == AttentionMode::global);
  CHECK(g->context_text == "<bos>system+history");
  CHECK(g->query_text == "user turn+prompt");
  CHECK_FALSE(g->add_bos);

  auto star = parse(R"({"model": "m", "messages": [{"role": "user", "content": "q"}], "starmesh": {"mode": "star"}})",
                    Endpoint::chat);
  CHECK(to_generate_request(*star, render, param)->mode == AttentionMode::star);
  auto kept = parse(
      R"({"model": "m", "messages": [{"role": "user", "content": "q"}],
          "starmesh": {"context_id": "0123456789abcdef0123456789abcdef"}})",
      Endpoint::chat);
  auto k = to_generate_request(*kept, render, param);
  REQUIRE(k);
  CHECK(k->context_text.empty());
  CHECK(k->query_text == "user turn+prompt");
  CHECK(k->mode == AttentionMode::star);

  auto no_template = to_generate_request(*r, {}, param);
  REQUIRE_FALSE(no_template);
  CHECK(no_template.code() == ErrorCode::not_found);
  auto with_context =
      parse(R"({"model": "m", "messages": [{"role": "user", "content": "q"}], "starmesh": {"context": "d"}})",
            Endpoint::chat);
  CHECK_FALSE(to_generate_request(*with_context, render, param));
  CHECK(param == "starmesh.context");
}
