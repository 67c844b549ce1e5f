// The Jinja subset: every construct against jinja2 (tests/fixtures/chat/jinja_cases.json, made by
// tools/make_chat_fixtures.py with transformers' settings), then errors, refusals and bounds.
#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "model/jinja_json.hpp"
#include "starmesh/model/jinja_template.hpp"

using namespace starmesh;
using jinja::Limits;
using jinja::Template;
using jinja::Value;

namespace {

nlohmann::ordered_json load_json(const std::string& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot open ", path);
  return nlohmann::ordered_json::parse(in);
}

Expected<std::string> render(std::string_view source, std::vector<std::pair<std::string, Value>> vars = {},
                             const Limits& limits = {}) {
  SM_ASSIGN(t, Template::parse(source, limits));
  return t.render(std::move(vars));
}

std::string ok(std::string_view source, std::vector<std::pair<std::string, Value>> vars = {}) {
  auto out = render(source, std::move(vars));
  REQUIRE_MESSAGE(out.has_value(), source, " failed: ", (out ? std::string() : out.error().message));
  return *out;
}

Error fails(std::string_view source, const Limits& limits = {}) {
  auto out = render(source, {}, limits);
  REQUIRE_MESSAGE(!out.has_value(), source, " rendered ", (out ? *out : std::string()));
  CHECK(out.code() == ErrorCode::invalid_argument);
  return out.error();
}

bool contains(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("jinja renders every construct as jinja2 does under transformers") {
  const auto fixture = load_json(STARMESH_FIXTURES_DIR "/chat/jinja_cases.json");
  const auto context = test::jinja_context(fixture.at("context"));
  int total = 0, same = 0;
  for (const auto& c : fixture.at("cases")) {
    const std::string source = c.at("source").get<std::string>();
    const auto out = render(source, context);
    ++total;
    if (c.contains("expected")) {
      const std::string want = c.at("expected").get<std::string>();
      if (out && *out == want) {
        ++same;
      } else {
        FAIL_CHECK("source " << nlohmann::json(source).dump() << "\n  got  "
                             << (out ? nlohmann::json(*out).dump() : "error: " + out.error().message) << "\n  want "
                             << nlohmann::json(want).dump());
      }
    } else if (!out && out.code() == ErrorCode::invalid_argument) {
      ++same;
    } else {
      FAIL_CHECK("source " << nlohmann::json(source).dump() << " should fail (" << c.at("error").get<std::string>()
                           << ") but gave " << (out ? nlohmann::json(*out).dump() : out.error().message));
    }
  }
  MESSAGE(total, " cases by ", fixture.at("renderer").get<std::string>(), ": ", same, " alike");
  CHECK(total >= 80);
  CHECK(same == total);
}

TEST_CASE("jinja syntax errors name the line and are invalid_argument") {
  CHECK(contains(fails("a\nb\n{% if true %}\nnever closed").message, "opened on line 3"));
  CHECK(contains(fails("line one\n{{ 'x' | nosuchfilter }}").message, "line 2"));
  CHECK(contains(fails("{{ 'x' | nosuchfilter }}").message, "nosuchfilter"));
  CHECK(contains(fails("{% endfor %}").message, "unknown tag 'endfor'"));
  CHECK(contains(fails("{{ (1 ]}}").message, "expected ')'"));
  CHECK(contains(fails("\n\n{{ 'open").message, "line 3"));
  CHECK(contains(fails("{# never closed").message, "comment"));
  CHECK(contains(fails("{{ 99999999999999999999 }}").message, "64 bits"));
  CHECK(contains(fails("{{ \"\\xZZ\" }}").message, "escape"));
  CHECK(contains(fails("{{ 'a' @ 'b' }}").message, "unexpected character '@'"));
  CHECK(contains(fails("\xff").message, "not UTF-8"));
}

TEST_CASE("jinja refuses what the subset lacks by name") {
  CHECK(contains(fails("{% macro m() %}x{% endmacro %}").message, "{% macro %}"));
  CHECK(contains(fails("{% include 'other' %}").message, "{% include %}"));
  CHECK(contains(fails("{% raw %}x{% endraw %}").message, "{% raw %}"));
  CHECK(contains(fails("{% for x in [1] recursive %}{% endfor %}").message, "recursive"));
  CHECK(contains(fails("{{ f(*args) }}").message, "*args"));
  CHECK(contains(fails("{% set a, b = 1, 2 %}").message, "several targets"));
  CHECK(contains(fails("{% break %}").message, "outside a for loop"));
}

TEST_CASE("jinja runtime errors name the line and what is undefined") {
  const Error e = fails("a\n{{ missing.attribute }}");
  CHECK(contains(e.message, "line 2"));
  CHECK(contains(e.message, "'missing' is undefined"));
  CHECK(contains(fails("{{ 1 + 'a' }}").message, "'int' and 'str'"));
  CHECK(contains(fails("{{ 9223372036854775807 + 1 }}").message, "overflow"));
  CHECK(contains(fails("{{ 2 ** 64 }}").message, "overflow"));
  CHECK(contains(fails("{% set x = 1 %}{% set x.a = 2 %}").message, "not a namespace"));
}

TEST_CASE("jinja raise_exception is an invalid_argument error carrying the message") {
  const Error e = fails("{{ raise_exception('Conversation roles must alternate') }}");
  CHECK(e.code == ErrorCode::invalid_argument);
  CHECK(contains(e.message, "Conversation roles must alternate"));
}

TEST_CASE("jinja values cross from C++: strings stay bytes, lists and dicts keep order") {
  std::vector<std::pair<std::string, Value>> vars = {
      {"m", Value::dict({{"z", Value::integer(1)}, {"a", Value::string("é")}})},
      {"l", Value::list({Value::none(), Value::boolean(false), Value::floating(0.5)})},
  };
  CHECK(ok("{{ m | tojson }} {{ m }} {{ l }} {{ l | tojson }}", vars) ==
        "{\"z\": 1, \"a\": \"é\"} {'z': 1, 'a': 'é'} [None, False, 0.5] [null, false, 0.5]");
  CHECK(ok("{{ x }}", {{"x", Value::string(std::string("a\0b", 3))}}) == std::string("a\0b", 3));
}

TEST_CASE("jinja bounds the template size") {
  Limits limits;
  limits.max_source_bytes = 100;
  CHECK(contains(fails(std::string(101, 'x'), limits).message, "max_source_bytes"));
  CHECK(render(std::string(100, 'x'), {}, limits).has_value());
}

TEST_CASE("jinja bounds the output and every string built") {
  Limits limits;
  limits.max_output_bytes = 1000;
  CHECK(contains(fails("{% for i in range(2000) %}x{% endfor %}", limits).message, "max_output_bytes"));
  CHECK(contains(fails("{% set s = 'x' * 2000 %}", limits).message, "max_output_bytes"));
  CHECK(contains(fails("{% set s = 'x' * 600 %}{% set t = s + s %}", limits).message, "max_output_bytes"));
  CHECK(contains(fails("{% set s = 'x' * 600 %}{% set t = s ~ s %}", limits).message, "max_output_bytes"));
  CHECK(
      contains(fails("{% set s = ['xxxxxxxxxx'] * 200 %}{% set t = s | join %}", limits).message, "max_output_bytes"));
  CHECK(contains(fails("{% set s = ['xxxxxxxxxx'] * 200 %}{% set t = s | tojson %}", limits).message,
                 "max_output_bytes"));
  CHECK(
      contains(fails("{% set s = 'x' * 600 %}{% set t = s.replace('x', 'yy') %}", limits).message, "max_output_bytes"));
  CHECK(render("{% for i in range(1000) %}x{% endfor %}", {}, limits).has_value());
}

TEST_CASE("jinja bounds the work a template does") {
  Limits limits;
  limits.max_steps = 100000;
  CHECK(contains(fails("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}", limits).message,
                 "max_steps"));
  CHECK(contains(fails("{% for i in range(1000) %}{% set s = range(1000) | join %}{% endfor %}", limits).message,
                 "max_steps"));
  CHECK(contains(fails("{{ range(100001) | length }}").message, "100000"));
}

TEST_CASE("jinja charges text: copying a long string over and over runs out of steps") {
  Limits limits;
  limits.max_steps = 100000;  // a 1 MiB copy costs 4096 steps
  CHECK(contains(
      fails("{% set s = 'x' * 1048576 %}{% for i in range(100) %}{% set t = s ~ 'y' %}{% endfor %}", limits).message,
      "max_steps"));
  CHECK(contains(
      fails("{% set s = 'x' * 1048576 %}{% for i in range(100) %}{% if s == s %}{% endif %}{% endfor %}", limits)
          .message,
      "max_steps"));
  CHECK(render("{% set s = 'x' * 1048576 %}{{ s | length }}", {}, limits).has_value());
}

TEST_CASE("jinja bounds the items of lists a template builds") {
  Limits limits;
  limits.max_items = 1000;
  CHECK(contains(fails("{% set l = [1] * 1001 %}", limits).message, "max_items"));
  CHECK(contains(fails("{% set l = [1] * 600 %}{% set m = l + l %}", limits).message, "max_items"));
  CHECK(contains(fails("{{ range(1001) | list }}", limits).message, "max_items"));
  CHECK(render("{% set l = [1] * 1000 %}{{ l | length }}", {}, limits).has_value());
}

TEST_CASE("jinja bounds nesting: blocks, brackets, expressions and values") {
  Limits limits;
  limits.max_depth = 16;
  std::string blocks;
  for (int i = 0; i < 20; ++i) blocks += "{% if true %}";
  for (int i = 0; i < 20; ++i) blocks += "{% endif %}";
  CHECK(contains(fails(blocks, limits).message, "max_depth"));
  CHECK(
      contains(fails("{{ " + std::string(20, '(') + "1" + std::string(20, ')') + " }}", limits).message, "max_depth"));
  CHECK(contains(fails("{{ " + std::string(20, '[') + std::string(20, ']') + " }}", limits).message, "max_depth"));
  std::string chain = "{{ 1";
  for (int i = 0; i < 100; ++i) chain += " + 1";
  CHECK(contains(fails(chain + " }}", limits).message, "max_depth"));
  CHECK(contains(
      fails("{% set ns = namespace(v=[]) %}{% for i in range(40) %}{% set ns.v = [ns.v] %}{% endfor %}", limits)
          .message,
      "max_depth"));
  CHECK(contains(
      fails("{% set ns = namespace(v=1) %}{% for i in range(40) %}{% set ns.v = dict(a=ns.v) %}{% endfor %}", limits)
          .message,
      "max_depth"));
  CHECK(contains(
      fails("{% set ns = namespace(v=1) %}{% for i in range(40) %}{% set ns.v = {'a': ns.v}.items() %}{% endfor %}",
            limits)
          .message,
      "max_depth"));
  std::string nots = "{{ ";
  for (int i = 0; i < 40; ++i) nots += "not ";
  CHECK(contains(fails(nots + "1 }}", limits).message, "max_depth"));
  std::string minus = "{{ ";
  for (int i = 0; i < 40; ++i) minus += "- ";
  CHECK(contains(fails(minus + "1 }}", limits).message, "max_depth"));
}

TEST_CASE("jinja upper and lower map ASCII letters only, a documented gap") {
  // Python maps all of Unicode ('é'.upper() is 'É'); no chat template we serve case-maps text.
  CHECK(ok("{{ 'Héllo' | upper }}|{{ 'ÀBC' | lower }}|{{ 'straße'.upper() }}") == "HéLLO|Àbc|STRAßE");
}

TEST_CASE("jinja templates are reusable and render the same twice") {
  auto t =
      Template::parse("{% set ns = namespace(n=0) %}{% for i in xs %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}");
  REQUIRE(t.has_value());
  const std::vector<std::pair<std::string, Value>> vars = {{"xs", Value::list({Value::integer(1), Value::integer(2)})}};
  CHECK(*t->render(vars) == "3");
  CHECK(*t->render(vars) == "3");
  const Template copy = *t;
  CHECK(*copy.render(vars) == "3");
}
