// Load on a running mesh through the public API (Cap'n Proto, the real client): `--clients`
// clients, a thread and a connection each, send requests back to back for `--seconds`, each a
// fresh random context. Prints one JSON object: requests sent, served, failures by ErrorCode,
// throughput, and the served requests' latency (end to end and to the first token) at p50 /
// p99. A refusal for load (`overloaded`) is counted and retried after a short pause; any other
// failure is counted too (bench/load_e2e.sh and the short test check there are none).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <vector>

#include "starmesh/api/api_client.hpp"

using namespace starmesh;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string connect, token;
  int clients = 32;
  double seconds = 120;
  int context = 512, query = 8, max_tokens = 16, vocab = 2048;
  int64_t block = 256;
  uint32_t seed = 1;
};

struct Tally {
  std::mutex mu;
  std::vector<double> latency, first_token;  // served requests, seconds
  std::map<std::string, int64_t> failures;   // by ErrorCode's name
  int64_t sent = 0, tokens = 0;
  std::string example;  // one failure's message, for people
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(p * double(v.size() - 1) + 0.5))];
}

void client_loop(const Options& o, int index, Clock::time_point until, Tally& t) {
  auto client = ApiClient::connect(o.connect, o.token);
  if (!client) {
    std::lock_guard lock(t.mu);
    ++t.failures[std::string(to_string(client.code()))];
    t.example = client.error().message;
    return;
  }
  std::mt19937 rng(o.seed * 1000003u + uint32_t(index));
  std::uniform_int_distribution<int32_t> id(0, o.vocab - 1);
  while (Clock::now() < until) {
    GenerateRequest r;
    r.context_ids.resize(size_t(o.context));
    r.query_ids.resize(size_t(o.query));
    for (auto& x : r.context_ids) x = id(rng);
    for (auto& x : r.query_ids) x = id(rng);
    r.block_size = o.block;
    r.max_new_tokens = o.max_tokens;
    const auto t0 = Clock::now();
    double first = -1;
    int64_t tokens = 0;
    auto got = (*client)->generate(r, [&](const TokenChunk& c) {
      if (first < 0) first = std::chrono::duration<double>(Clock::now() - t0).count();
      tokens += int64_t(c.ids.size());
      return true;
    });
    const double took = std::chrono::duration<double>(Clock::now() - t0).count();
    {
      std::lock_guard lock(t.mu);
      ++t.sent;
      if (got) {
        t.latency.push_back(took);
        t.first_token.push_back(first < 0 ? took : first);
        t.tokens += tokens;
        continue;
      }
      ++t.failures[std::string(to_string(got.code()))];
      if (t.example.empty() || got.code() != ErrorCode::overloaded) t.example = got.error().message;
    }
    // Refused for load: retry after a pause, as a client should.
    if (got.code() == ErrorCode::overloaded) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"Concurrent clients against a starmesh router's API; prints JSON."};
  app.add_option("--connect", o.connect, "the router's API address, host:port")->required();
  app.add_option("--token", o.token, "API token (any text for an open router)");
  app.add_option("--clients", o.clients, "concurrent clients")->check(CLI::Range(1, 1024));
  app.add_option("--seconds", o.seconds, "how long they send")->check(CLI::Range(0.1, 86400.0));
  app.add_option("--context", o.context, "context tokens per request")->check(CLI::Range(1, 1 << 20));
  app.add_option("--query", o.query, "query tokens per request")->check(CLI::Range(1, 4096));
  app.add_option("--max-tokens", o.max_tokens, "tokens to generate")->check(CLI::Range(1, 4096));
  app.add_option("--block", o.block, "block size")->check(CLI::Range(1, 1 << 20));
  app.add_option("--vocab", o.vocab, "random ids are drawn from [0, vocab)")->check(CLI::Range(2, 1 << 20));
  app.add_option("--seed", o.seed, "random contexts' seed");
  CLI11_PARSE(app, argc, argv);

  Tally t;
  const auto start = Clock::now();
  const auto until = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.seconds));
  std::vector<std::thread> threads;
  for (int i = 0; i < o.clients; ++i) threads.emplace_back(client_loop, std::cref(o), i, until, std::ref(t));
  for (auto& th : threads) th.join();
  const double wall = std::chrono::duration<double>(Clock::now() - start).count();

  nlohmann::json out;
  out["clients"] = o.clients;
  out["seconds"] = wall;
  out["context_tokens"] = o.context;
  out["max_tokens"] = o.max_tokens;
  out["sent"] = t.sent;
  out["served"] = t.latency.size();
  out["failures"] = t.failures;
  out["requests_per_second"] = double(t.latency.size()) / wall;
  out["tokens_per_second"] = double(t.tokens) / wall;
  out["latency_p50_s"] = percentile(t.latency, 0.50);
  out["latency_p99_s"] = percentile(t.latency, 0.99);
  out["first_token_p50_s"] = percentile(t.first_token, 0.50);
  out["first_token_p99_s"] = percentile(t.first_token, 0.99);
  if (!t.example.empty()) out["failure_example"] = t.example;
  std::printf("%s\n", out.dump().c_str());
  int other = 0;  // failures other than refusals for load
  for (const auto& [code, n] : t.failures) other += code == "overloaded" ? 0 : int(n);
  return other == 0 && !t.latency.empty() ? 0 : 1;
}
