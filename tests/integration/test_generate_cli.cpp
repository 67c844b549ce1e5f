// `starmesh generate --json`: one JSON object a script can read (ids, text, timings, each
// host's phase 1), a tokenized context from --context-ids-file, and a refusal that names a
// bad file. With one block, Star Attention is exact: its tokens equal global attention's.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "integration/run_cli.hpp"

using namespace starmesh;

namespace {

std::string write_ids(const std::string& name, int count) {
  const std::string path = "/tmp/starmesh_test_" + std::to_string(::getpid()) + "_" + name;
  std::ofstream out(path);
  for (int i = 0; i < count; ++i) out << (i ? "," : "") << (i * 37 + 11) % 400 + 3;
  out << "\n";
  return path;
}

nlohmann::json generate_json(const std::string& args) {
  const test::Ran ran =
      test::run_cli(std::string("generate --model ") + STARMESH_GOLDEN_MODEL_DIR +
                        " --threads 1 --max-tokens 6 --query 'a question' --json " + args + " 2>/dev/null",
                    120);
  INFO(args << "\n" << ran.out);
  REQUIRE(ran.ok());
  return nlohmann::json::parse(ran.out);
}

}  // namespace

TEST_CASE("generate --json reports ids, text and each host's phase 1, from a tokenized context") {
  const std::string ids = write_ids("ctx.txt", 700);
  const nlohmann::json star = generate_json("--context-ids-file " + ids + " --mode star --hosts 3 --block-size 128");
  CHECK(star["context_tokens"] == 700);
  CHECK(star["generated_tokens"] == star["ids"].size());
  CHECK(star["ids"].size() == 6);
  REQUIRE(star["phase1_host_s"].size() == 3);
  double slowest = 0;
  for (const auto& h : star["phase1_host_s"]) {
    CHECK(h.get<double>() > 0);
    slowest = std::max(slowest, h.get<double>());
  }
  CHECK(star["phase1_max_host_s"].get<double>() == slowest);
  CHECK(star["phase1_s"].get<double>() >= slowest);
  CHECK(star["decode_tok_s"].get<double>() > 0);

  // One block holds the whole context: phase 1 is plain causal encoding, and the tokens are
  // global attention's.
  const nlohmann::json one = generate_json("--context-ids-file " + ids + " --mode star --hosts 1 --block-size 1024");
  const nlohmann::json global = generate_json("--context-ids-file " + ids + " --mode global");
  CHECK(one["ids"] == global["ids"]);
  CHECK(global["context_tokens"] == 700);
  CHECK_FALSE(global.contains("phase1_s"));
  std::remove(ids.c_str());
}

TEST_CASE("generate refuses a context ids file that is missing or holds something else") {
  const test::Ran missing = test::run_cli(std::string("generate --model ") + STARMESH_GOLDEN_MODEL_DIR +
                                          " --context-ids-file /nonexistent/ids --query q 2>&1");
  CHECK_FALSE(missing.ok());
  CHECK(missing.out.find("cannot read '/nonexistent/ids'") != std::string::npos);
  const std::string bad = "/tmp/starmesh_test_" + std::to_string(::getpid()) + "_bad.txt";
  std::ofstream(bad) << "1,2,three,4";
  const test::Ran ran = test::run_cli(std::string("generate --model ") + STARMESH_GOLDEN_MODEL_DIR +
                                      " --context-ids-file " + bad + " --query q 2>&1");
  CHECK_FALSE(ran.ok());
  CHECK(ran.out.find("--context-ids-file: 'three' is not a token id") != std::string::npos);
  std::remove(bad.c_str());
}

TEST_CASE("starmesh --version names the version and the build") {
  const test::Ran ran = test::run_cli("--version 2>&1");
  CHECK(ran.ok());
  CHECK(ran.out.rfind("starmesh 0.", 0) == 0);
  CHECK(ran.out.find("build: ") != std::string::npos);
  CHECK(ran.out.find("compute") != std::string::npos);
}

TEST_CASE("--context-file - reads standard input, and gives what the file gives") {
  char path[] = "/tmp/starmesh-ctx-XXXXXX";
  const int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  const std::string doc = "The quick brown fox jumps over the lazy dog. It was a sunny day.";
  REQUIRE(write(fd, doc.data(), doc.size()) == ssize_t(doc.size()));
  close(fd);
  const std::string args = std::string(" --model ") + STARMESH_GOLDEN_MODEL_DIR +
                           " --mode star --block-size 8 --query ' What jumped?' --max-tokens 4 --json 2>/dev/null";
  const test::Ran from_file = test::run_cli("generate --context-file " + std::string(path) + args);
  const test::Ran from_stdin = test::run_cli("generate --context-file -" + args + " < " + path);
  std::remove(path);
  REQUIRE(from_file.ok());
  REQUIRE(from_stdin.ok());
  const auto a = nlohmann::json::parse(from_file.out), b = nlohmann::json::parse(from_stdin.out);
  CHECK(a["context_tokens"].get<int>() > 10);
  CHECK(a["context_tokens"] == b["context_tokens"]);
  CHECK(a["ids"] == b["ids"]);
}

TEST_CASE("a config file with an unknown key is refused, naming it") {
  char path[] = "/tmp/starmesh-cfg-XXXXXX";
  const int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  const std::string cfg = "[router]\nlisten = \"127.0.0.1:0\"\n[worker]\ncapacity = 100\ncapasity = 200\n";
  REQUIRE(write(fd, cfg.data(), cfg.size()) == ssize_t(cfg.size()));
  close(fd);
  const test::Ran ran = test::run_cli("worker --config " + std::string(path) + " --router 127.0.0.1:1 2>&1");
  std::remove(path);
  INFO(ran.out);
  CHECK(ran.exited());
  CHECK(ran.code() != 0);
  CHECK(ran.out.find("capasity") != std::string::npos);
}

TEST_CASE("a worker refuses a --capacity its device cannot hold, before it joins, naming the most that fits") {
  // 2^34 tokens of the tiny model's KV (4 KiB a token) are 64 TiB: more than any host has.
  const test::Ran ran =
      test::run_cli("worker --model " STARMESH_GOLDEN_MODEL_DIR " --router 127.0.0.1:1 --capacity 17179869184 2>&1");
  INFO(ran.out);
  CHECK(ran.exited());
  CHECK(ran.code() != 0);
  CHECK(ran.out.find("--capacity 17179869184 KV tokens need 65536.0 GiB") != std::string::npos);
  CHECK(ran.out.find("give --capacity at most") != std::string::npos);
}

TEST_CASE("--log-format json writes one JSON object per log line, and the level comes from the environment") {
  // A router that starts, logs, and is stopped by `timeout` after 2 s.
  const test::Ran json = test::run_cli("--log-format json router --listen 127.0.0.1:0 2>&1 >/dev/null", 2);
  INFO(json.out);
  int lines = 0;
  for (size_t at = 0; at < json.out.size();) {
    const size_t end = json.out.find('\n', at);
    const std::string line = json.out.substr(at, end == std::string::npos ? std::string::npos : end - at);
    at = end == std::string::npos ? json.out.size() : end + 1;
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line);  // throws (fails the test) on a line that is not JSON
    CHECK(j.contains("time"));
    CHECK(j["logger"] == "router");
    CHECK(j.contains("level"));
    CHECK(j.contains("message"));
    ++lines;
  }
  CHECK(lines >= 1);
  const test::Ran quiet = test::run_cli("router --listen 127.0.0.1:0 2>&1 >/dev/null", 2);
  CHECK(quiet.out.find("[info]") != std::string::npos);
  setenv("STARMESH_LOG_LEVEL", "warn", 1);
  const test::Ran env = test::run_cli("router --listen 127.0.0.1:0 2>&1 >/dev/null", 2);
  unsetenv("STARMESH_LOG_LEVEL");
  CHECK(env.out.find("[info]") == std::string::npos);
  const test::Ran bad = test::run_cli("--log-level loud router 2>&1");
  CHECK(bad.code() != 0);
  CHECK(bad.out.find("loud") != std::string::npos);
}

namespace {
// Every line of `out` as a JSON object (a line that is not JSON fails the test).
std::vector<nlohmann::json> json_lines(const std::string& out) {
  std::vector<nlohmann::json> lines;
  for (size_t at = 0; at < out.size();) {
    const size_t end = std::min(out.find('\n', at), out.size());
    if (end > at) lines.push_back(nlohmann::json::parse(out.substr(at, end - at)));
    at = end + 1;
  }
  return lines;
}
}  // namespace

TEST_CASE("generate --progress --json reports each layer loaded and each phase-1 block as JSON lines") {
  const std::string ids = write_ids("progress.txt", 700);
  const test::Ran ran = test::run_cli(std::string("generate --model ") + STARMESH_GOLDEN_MODEL_DIR +
                                          " --threads 1 --max-tokens 3 --query 'q' --json --progress --mode star "
                                          "--hosts 2 --block-size 128 --context-ids-file " +
                                          ids + " 2>&1 >/dev/null",
                                      120);
  INFO(ran.out);
  REQUIRE(ran.ok());
  std::vector<int64_t> layers, blocks;
  for (const auto& j : json_lines(ran.out)) {
    if (j["progress"] == "loading") layers.push_back(j["done"]);
    if (j["progress"] == "encoding") {
      CHECK(j["total"] == 6);  // 700 tokens in blocks of 128
      blocks.push_back(j["done"]);
    }
  }
  REQUIRE_FALSE(layers.empty());
  for (size_t i = 0; i < layers.size(); ++i) CHECK(layers[i] == int64_t(i + 1));
  CHECK(blocks == std::vector<int64_t>{1, 2, 3, 4, 5, 6});
  // For people: one line per step.
  const test::Ran text = test::run_cli(std::string("generate --model ") + STARMESH_GOLDEN_MODEL_DIR +
                                           " --threads 1 --max-tokens 1 --query 'q' --progress --mode star "
                                           "--block-size 128 --context-ids-file " +
                                           ids + " 2>&1 >/dev/null",
                                       120);
  CHECK(text.out.find("encoding: 6/6") != std::string::npos);
  CHECK(text.out.find("loading: ") != std::string::npos);
}
