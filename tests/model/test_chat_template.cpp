// Chat templates: the real Llama 3 / 3.1 / 3.2 templates against transformers' renderings
// (tests/fixtures/chat/expected.json, made by tools/make_chat_fixtures.py), loading from
// tokenizer_config.json, and Star Attention's context / query split.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "starmesh/model/chat_template.hpp"

namespace fs = std::filesystem;
using namespace starmesh;

namespace {

const std::string kChatFixtures = STARMESH_FIXTURES_DIR "/chat";

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open ", path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

ChatTemplate fixture_template(const std::string& name) {
  const auto manifest = nlohmann::json::parse(read_text(kChatFixtures + "/templates.json"));
  for (const auto& t : manifest.at("templates")) {
    if (t.at("name") != name) continue;
    auto parsed = ChatTemplate::parse(read_text(kChatFixtures + "/" + t.at("file").get<std::string>()),
                                      t.at("bos_token").get<std::string>(), t.at("eos_token").get<std::string>());
    REQUIRE_MESSAGE(parsed.has_value(), name, ": ", (parsed ? std::string() : parsed.error().message));
    return *parsed;
  }
  FAIL("no fixture template named " << name);
  throw std::logic_error("unreachable");
}

ChatTemplate inline_template(const std::string& source) {
  auto parsed = ChatTemplate::parse(source, "<s>", "</s>");
  REQUIRE_MESSAGE(parsed.has_value(), (parsed ? std::string() : parsed.error().message));
  return *parsed;
}

ChatRenderOptions fixed_options(bool add_generation_prompt = true) {
  ChatRenderOptions opts;
  opts.add_generation_prompt = add_generation_prompt;
  opts.now = std::chrono::sys_days(std::chrono::year{2025} / 3 / 7) + std::chrono::hours(12);
  return opts;
}

const std::vector<ChatMessage> kSystemUser = {{"system", "You read documents."}, {"user", "What does it say?"}};

// A temporary directory, removed at the end of the test.
struct TempDir {
  fs::path path = fs::temp_directory_path() / ("starmesh_chat_" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
  fs::path write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name, std::ios::binary) << text;
    return path / name;
  }
};

}  // namespace

TEST_CASE("chat templates render the Llama 3.x conversations byte for byte as transformers") {
  const auto fixture = nlohmann::ordered_json::parse(read_text(kChatFixtures + "/expected.json"));
  std::map<std::string, ChatTemplate> templates;
  int total = 0, same = 0, skipped = 0;
  for (const auto& c : fixture.at("cases")) {
    const std::string name = c.at("template").get<std::string>();
    if (!templates.count(name)) templates.emplace(name, fixture_template(name));
    if (c.contains("skipped")) {
      ++skipped;
      continue;
    }
    std::vector<ChatMessage> messages;
    for (const auto& m : c.at("messages"))
      messages.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
    ChatRenderOptions opts;
    opts.add_generation_prompt = c.at("add_generation_prompt").get<bool>();
    if (!c.at("date_string").is_null()) opts.date_string = c.at("date_string").get<std::string>();
    opts.now = std::chrono::sys_seconds(std::chrono::seconds(c.at("now_epoch").get<int64_t>()));
    const auto out = templates.at(name).render(messages, opts);
    const std::string what = name + " / " + c.at("conversation").get<std::string>() +
                             (opts.add_generation_prompt ? " + generation prompt" : "") +
                             (opts.date_string.empty() ? "" : " / date " + opts.date_string);
    ++total;
    if (c.contains("expected")) {
      const std::string want = c.at("expected").get<std::string>();
      if (out && *out == want)
        ++same;
      else
        FAIL_CHECK(what << "\n  got  " << (out ? nlohmann::json(*out).dump() : "error: " + out.error().message)
                        << "\n  want " << nlohmann::json(want).dump());
    } else if (!out && out.code() == ErrorCode::invalid_argument) {
      ++same;
    } else {
      FAIL_CHECK(what << " should fail: " << c.at("error").get<std::string>());
    }
  }
  MESSAGE(total, " renderings by ", fixture.at("renderer").get<std::string>(), ": ", same, " identical, ", skipped,
          " skipped");
  CHECK(total >= 90);
  CHECK(same == total);
}

TEST_CASE("chat templates: the Llama 3.2 date comes from date_string, else strftime_now on the given clock") {
  const ChatTemplate t = fixture_template("llama3_2_instruct");
  ChatRenderOptions opts = fixed_options();
  auto out = t.render(kSystemUser, opts);
  REQUIRE(out.has_value());
  CHECK(out->find("Today Date: 07 Mar 2025\n") != std::string::npos);
  opts.date_string = "01 Jan 2030";
  out = t.render(kSystemUser, opts);
  REQUIRE(out.has_value());
  CHECK(out->find("Today Date: 01 Jan 2030\n") != std::string::npos);
  opts = ChatRenderOptions{};  // the real clock: some date, in the template's format
  out = t.render(kSystemUser, opts);
  REQUIRE(out.has_value());
  CHECK(out->find("Today Date: ") != std::string::npos);
}

TEST_CASE("chat templates: strftime_now formats the C locale's way and refuses what it does not know") {
  const ChatTemplate all = inline_template("{{ strftime_now('%a %A %b %B %d %e %H %I %j %m %M %p %S %y %Y %%') }}");
  ChatRenderOptions opts;
  opts.now = std::chrono::sys_days(std::chrono::year{2024} / 2 / 5) + std::chrono::hours(15) + std::chrono::minutes(4) +
             std::chrono::seconds(9);
  auto out = all.render({}, opts);
  REQUIRE(out.has_value());
  CHECK(*out == "Mon Monday Feb February 05  5 15 03 036 02 04 PM 09 24 2024 %");
  auto bad = inline_template("{{ strftime_now('%Q') }}").render({}, opts);
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.code() == ErrorCode::invalid_argument);
}

TEST_CASE("chat templates: an empty conversation fails in the Llama 3.1 template as in transformers") {
  auto out = fixture_template("llama3_1_instruct").render({}, fixed_options());
  REQUIRE_FALSE(out.has_value());
  CHECK(out.code() == ErrorCode::invalid_argument);
  CHECK(out.error().message.find("undefined") != std::string::npos);
}

TEST_CASE("chat templates refuse messages that are not UTF-8") {
  auto out = fixture_template("llama3_simple").render({{"user", "bad \xC3("}}, fixed_options());
  REQUIRE_FALSE(out.has_value());
  CHECK(out.code() == ErrorCode::invalid_argument);
  CHECK(out.error().message.find("message 0") != std::string::npos);
}

TEST_CASE("chat templates load from tokenizer_config.json") {
  TempDir dir;
  SUBCASE("the string form, with AddedToken-style special tokens") {
    const auto path = dir.write("tokenizer_config.json", R"({"bos_token": {"content": "<B>", "lstrip": false},
        "eos_token": "<E>", "chat_template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}"})");
    auto t = ChatTemplate::from_tokenizer_config(path);
    REQUIRE_MESSAGE(t.has_value(), (t ? std::string() : t.error().message));
    CHECK(t->bos_token() == "<B>");
    CHECK(*t->render({{"user", "x"}}, fixed_options()) == "<B>x<E>");
  }
  SUBCASE("the list form takes the default template") {
    const auto path = dir.write("tokenizer_config.json", R"({"chat_template": [
        {"name": "tool_use", "template": "tools"}, {"name": "default", "template": "plain"}]})");
    auto t = ChatTemplate::from_tokenizer_config(path);
    REQUIRE(t.has_value());
    CHECK(*t->render({}, fixed_options()) == "plain");
  }
  SUBCASE("chat_template.jinja beside the config") {
    const auto path = dir.write("tokenizer_config.json", R"({"eos_token": "<E>"})");
    dir.write("chat_template.jinja", "{% for m in messages %}{{ m.role }}{% endfor %}{{ eos_token }}\n");
    auto t = ChatTemplate::from_tokenizer_config(path);
    REQUIRE(t.has_value());
    CHECK(*t->render({{"user", "x"}, {"assistant", "y"}}, fixed_options()) == "userassistant<E>");
  }
  SUBCASE("no template is not_found") {
    const auto path = dir.write("tokenizer_config.json", R"({"bos_token": "<s>"})");
    auto t = ChatTemplate::from_tokenizer_config(path);
    REQUIRE_FALSE(t.has_value());
    CHECK(t.code() == ErrorCode::not_found);
  }
  SUBCASE("a missing file is not_found") {
    auto t = ChatTemplate::from_tokenizer_config(dir.path / "absent.json");
    REQUIRE_FALSE(t.has_value());
    CHECK(t.code() == ErrorCode::not_found);
  }
  SUBCASE("broken JSON, a wrong type, a broken template, deep nesting are invalid_argument") {
    for (const char* text : {"{not json", R"({"chat_template": 5})", R"({"chat_template": "{% if %}"})",
                             R"({"bos_token": 5, "chat_template": "x"})"}) {
      auto t = ChatTemplate::from_tokenizer_config(dir.write("tokenizer_config.json", text));
      REQUIRE_FALSE(t.has_value());
      CHECK(t.code() == ErrorCode::invalid_argument);
    }
    auto t = ChatTemplate::from_tokenizer_config(
        dir.write("tokenizer_config.json", std::string(100, '[') + std::string(100, ']')));
    REQUIRE_FALSE(t.has_value());
    CHECK(t.error().message.find("nests deeper") != std::string::npos);
  }
}

TEST_CASE("chat templates load the Llama 3.1 test tokenizer's config") {
  const fs::path path = STARMESH_TESTDATA_DIR "/llama3_1/tokenizer_config.json";
  if (!fs::exists(path)) {
    MESSAGE("skipped: ", path.string(), " is absent (tools/setup.sh fetches it)");
    return;
  }
  auto t = ChatTemplate::from_tokenizer_config(path);
  REQUIRE_MESSAGE(t.has_value(), (t ? std::string() : t.error().message));
  CHECK(t->bos_token() == "<|begin_of_text|>");
  CHECK(t->eos_token() == "<|eot_id|>");
  CHECK(*t->render({{"user", " hi "}}, fixed_options()) ==
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST_CASE("split_chat: everything before the last user message is the context") {
  const ChatTemplate t = fixture_template("llama3_1_instruct");
  const std::vector<ChatMessage> messages = {{"system", "Long document ..."},
                                             {"user", "First question?"},
                                             {"assistant", "First answer."},
                                             {"user", "Second question?"}};
  const ChatRenderOptions opts = fixed_options();
  auto split = split_chat(t, messages, opts);
  REQUIRE(split.has_value());
  const std::string full = *t.render(messages, opts);
  CHECK(split->context + split->query == full);
  CHECK(split->context == *t.render({messages.begin(), messages.begin() + 3}, fixed_options(false)));
  CHECK(split->query ==
        "<|start_header_id|>user<|end_header_id|>\n\nSecond question?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n");
  CHECK(split->context.rfind("<|begin_of_text|>", 0) == 0);
}

TEST_CASE("split_chat: a system document and one question split at the question") {
  const ChatTemplate t = fixture_template("llama3_2_instruct");
  auto split = split_chat(t, kSystemUser, fixed_options());
  REQUIRE(split.has_value());
  CHECK(split->context ==
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
        "Today Date: 07 Mar 2025\n\nYou read documents.<|eot_id|>");
  CHECK(split->query ==
        "<|start_header_id|>user<|end_header_id|>\n\nWhat does it say?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST_CASE("split_chat: a lone user message, or none, is all query") {
  const ChatTemplate t = fixture_template("llama3_1_instruct");
  for (const auto& messages : std::vector<std::vector<ChatMessage>>{
           {{"user", "Only this."}}, {{"user", "Q"}, {"assistant", "A"}}, {{"system", "S"}, {"assistant", "A"}}}) {
    auto split = split_chat(t, messages, fixed_options());
    REQUIRE(split.has_value());
    CHECK(split->context.empty());
    CHECK(split->query == *t.render(messages, fixed_options()));
  }
}

TEST_CASE("split_chat: a template that rewrites earlier turns gives no context") {
  // Prints the number of messages first, so the earlier turns render differently alone.
  const ChatTemplate counts =
      inline_template("{{ messages | length }}:{% for m in messages %}{{ m.content }};{% endfor %}");
  const std::vector<ChatMessage> messages = {{"system", "doc"}, {"user", "q"}};
  auto split = split_chat(counts, messages, fixed_options());
  REQUIRE(split.has_value());
  CHECK(split->context.empty());
  CHECK(split->query == "2:doc;q;");
  // Refuses to render unless the last message is the user's: the prefix alone cannot render.
  const ChatTemplate strict = inline_template(
      "{% if messages[-1].role != 'user' %}{{ raise_exception('last must be user') }}{% endif %}"
      "{% for m in messages %}{{ m.content }}{% endfor %}");
  split = split_chat(strict, messages, fixed_options());
  REQUIRE(split.has_value());
  CHECK(split->context.empty());
  CHECK(split->query == "docq");
}

TEST_CASE("split_chat passes render errors through") {
  const ChatTemplate t = inline_template("{{ raise_exception('no') }}");
  auto split = split_chat(t, kSystemUser, fixed_options());
  REQUIRE_FALSE(split.has_value());
  CHECK(split.code() == ErrorCode::invalid_argument);
}
