// Many users at once through the mesh: a router and W worker processes (LocalMesh, on this
// machine), then for each concurrency C, C requests sent together, each over its own random
// context, streaming `--max-new` tokens. Per level: aggregate output tokens/s (all tokens over
// the wall time from the first send to the last answer), time to first token and inter-token
// latency (p50 / p99 over every request's tokens), and the worker's mean decode batch (from
// /metrics). Writes one JSON row per (workers, concurrency).
// --kept: each level's C contexts are encoded and kept first (untimed), then C questions over
// them are sent together: what is timed is the query's prefill and the decode, the way many
// users ask over cached documents; the aggregate is then the decode's (issue 17's 8x target).
// Usage: concurrency_bench --program build/bin/starmesh --model DIR [--device cuda] [--workers 1,4]
//        [--concurrent 1,4,16,64] [--context 8192] [--max-new 128] [--kept] [--json out.json]
#include <fmt/core.h>
#include <httplib.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <regex>

#include "starmesh/launch/local_mesh.hpp"

using namespace starmesh;
using Clock = std::chrono::steady_clock;

namespace {

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(p * double(v.size() - 1) + 0.5))];
}

// The value of one series in a Prometheus exposition (0 when absent).
double metric(const std::string& text, const std::string& series) {
  const std::regex line("^" + std::regex_replace(series, std::regex(R"([{}"])"), R"(\$&)") + R"( ([0-9.eE+-]+)$)",
                        std::regex::multiline);
  std::smatch m;
  return std::regex_search(text, m, line) ? std::stod(m[1]) : 0;
}

std::string http_get_metrics(uint16_t port) {
  httplib::Client http("127.0.0.1", port);
  auto res = http.Get("/metrics");
  return res && res->status == 200 ? res->body : std::string();
}

struct Outcome {
  Clock::time_point sent, first, done;
  std::vector<double> gaps;  // seconds between tokens after the first
  int64_t tokens = 0;
  std::string error;
};

// An order over `context` random ids (from `rng`), its blocks spread over `hosts`.
GenerateOrder order_over_random_context(std::mt19937& rng, int64_t context, int hosts, int32_t vocab) {
  GenerateOrder order;
  order.request.context_ids.resize(size_t(context));
  for (int32_t& id : order.request.context_ids) id = int32_t(rng() % uint32_t(vocab));
  order.request.block_size = (context + hosts - 1) / hosts;
  order.request.max_hosts = hosts;
  return order;
}

// C requests at once; returns when all have answered.
// With `kept` (one per request), each asks over its kept context instead of sending one.
std::vector<Outcome> run_level(LocalMesh& mesh, int concurrent, int64_t context, int hosts, int max_new, int32_t vocab,
                               const std::vector<ContextId>& kept = {}) {
  std::vector<Outcome> out(static_cast<size_t>(concurrent));
  std::mutex mu;
  std::condition_variable cv;
  int pending = concurrent;
  for (int i = 0; i < concurrent; ++i) {
    std::mt19937 rng(uint32_t(1000 * concurrent + i));
    GenerateOrder order = order_over_random_context(rng, context, hosts, vocab);
    if (!kept.empty()) {  // the question goes without a context, over its kept one
      order.request.context_ids.clear();
      order.request.context_id = kept[size_t(i)];
    }
    order.request.query_ids = {int32_t(rng() % uint32_t(vocab)), int32_t(rng() % uint32_t(vocab)), 13};
    order.request.max_new_tokens = max_new;
    Outcome& o = out[size_t(i)];
    o.sent = Clock::now();
    mesh.client().submit(
        std::move(order),
        [&, i](const ClientChunk& c) {
          std::lock_guard lock(mu);
          Outcome& r = out[size_t(i)];
          const auto now = Clock::now();
          if (r.tokens == 0) {
            r.first = now;
          } else {  // a chunk of k tokens after a gap: k gaps of gap / k
            const double gap = std::chrono::duration<double>(now - r.done).count() / double(c.ids.size());
            r.gaps.insert(r.gaps.end(), c.ids.size(), gap);
          }
          r.done = now;  // the last token so far
          r.tokens += int64_t(c.ids.size());
          return true;
        },
        [&, i](Expected<GenerateSummary> s) {
          std::lock_guard lock(mu);
          if (!s) out[size_t(i)].error = s.error().message;
          out[size_t(i)].done = Clock::now();
          if (--pending == 0) cv.notify_all();
        });
  }
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return pending == 0; });
  return out;
}

// Encodes `concurrent` random contexts at once and keeps them (one token out each); their ids,
// or the first error.
Expected<std::vector<ContextId>> keep_contexts(LocalMesh& mesh, int concurrent, int64_t context, int hosts,
                                               int32_t vocab) {
  std::vector<ContextId> ids(static_cast<size_t>(concurrent));
  std::optional<Error> failed;
  std::mutex mu;
  std::condition_variable cv;
  int pending = concurrent;
  for (int i = 0; i < concurrent; ++i) {
    std::mt19937 rng(uint32_t(7000 * concurrent + i));
    GenerateOrder order = order_over_random_context(rng, context, hosts, vocab);
    order.request.query_ids = {13};
    order.request.max_new_tokens = 1;
    order.request.keep_context = true;
    mesh.client().submit(
        std::move(order), [](const ClientChunk&) { return true; },
        [&, i](Expected<GenerateSummary> s) {
          std::lock_guard lock(mu);
          if (s) {
            ids[size_t(i)] = s->context_id;
          } else if (!failed) {
            failed = s.error();
          }
          if (--pending == 0) cv.notify_all();
        });
  }
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return pending == 0; });
  if (failed) return *failed;
  return ids;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Aggregate throughput and latency of concurrent requests through a local mesh"};
  LocalMeshOptions mo;
  std::vector<int> workers{1, 4}, levels{1, 4, 16, 64};
  int64_t context = 8192;
  int max_new = 128;
  bool kept = false;
  std::string json_path, variant;
  app.add_option("--program", mo.program, "The starmesh executable")->required();
  app.add_option("--model", mo.model_dir)->required();
  app.add_option("--device", mo.device)->capture_default_str();
  app.add_option("--threads-per-worker", mo.threads_per_worker)->capture_default_str();
  app.add_option("--workers", workers)->delimiter(',');
  app.add_option("--concurrent", levels)->delimiter(',');
  app.add_option("--context", context)->check(CLI::Range(int64_t(16), int64_t(1) << 20))->capture_default_str();
  app.add_option("--max-new", max_new)->check(CLI::Range(2, 4096))->capture_default_str();
  app.add_option("--worker-arg", mo.worker_args,
                 "A flag every worker gets (repeat it; --worker-arg=--no-cuda-kv-pages: no GPU KV arena)");
  app.add_option("--log-dir", mo.log_dir, "The processes' logs (default: inherited stderr)");
  app.add_flag("--kept", kept, "Encode and keep each level's contexts first; time questions over them");
  app.add_option("--json", json_path);
  app.add_option("--variant", variant, "A name for this run's settings (e.g. its --worker-arg flags), in every row");
  CLI11_PARSE(app, argc, argv);

  if (!mo.log_dir.empty()) std::filesystem::create_directories(mo.log_dir);
  nlohmann::json rows = nlohmann::json::array();
  const int most = *std::max_element(levels.begin(), levels.end());
  std::ifstream cfg_in(mo.model_dir + "/config.json");
  const int32_t vocab = std::min<int32_t>(nlohmann::json::parse(cfg_in).value("vocab_size", 32000), 128000);
  for (int w : workers) {
    // Every request's shard on each worker, and its query and output on one: all levels fit.
    mo.workers = w;
    mo.capacity = int64_t(most) * ((context + w - 1) / w + max_new + 64) + 1024;
    mo.metrics = true;
    mo.start_timeout = std::chrono::minutes(10);
    mo.router_args = {"--phase1-timeout", "1800", "--step-timeout", "600", "--queue-timeout", "1800"};
    MeshConfig cfg{{2, true, false}};
    caf::actor_system sys{cfg};
    auto mesh = LocalMesh::start(sys, mo);
    if (!mesh) {
      fmt::print(stderr, "error: {}\n", mesh.error().message);
      return 1;
    }
    run_level(**mesh, 1, std::min<int64_t>(context, 256), w, 4, vocab);  // warm-up: first-use costs
    for (int c : levels) {
      auto batches_before = 0.0, steps_before = 0.0;
      for (size_t i = 1; i < (*mesh)->metrics_ports().size(); ++i) {
        const std::string m = http_get_metrics((*mesh)->metrics_ports()[i]);
        batches_before += metric(m, "starmesh_worker_decode_batch_size_count");
        steps_before += metric(m, "starmesh_worker_decode_batch_size_sum");
      }
      std::vector<ContextId> kept_ids;
      if (kept) {
        auto ids = keep_contexts(**mesh, c, context, w, vocab);
        if (!ids) {
          fmt::print(stderr, "error: keeping {} contexts: {}\n", c, ids.error().message);
          return 1;
        }
        kept_ids = std::move(*ids);
      }
      const auto t0 = Clock::now();
      const std::vector<Outcome> got = run_level(**mesh, c, context, w, max_new, vocab, kept_ids);
      for (const ContextId& id : kept_ids) {
        if (Status st = (*mesh)->client().drop(id); !st) fmt::print(stderr, "drop: {}\n", st.error().message);
      }
      Clock::time_point last = t0;
      std::vector<double> ttft, itl;
      int64_t tokens = 0;
      int failed = 0;
      for (const Outcome& o : got) {
        if (!o.error.empty()) {
          ++failed;
          fmt::print(stderr, "a request failed: {}\n", o.error);
          continue;
        }
        last = std::max(last, o.done);
        ttft.push_back(std::chrono::duration<double>(o.first - o.sent).count());
        itl.insert(itl.end(), o.gaps.begin(), o.gaps.end());
        tokens += o.tokens;
      }
      double batches = -batches_before, steps = -steps_before;
      for (size_t i = 1; i < (*mesh)->metrics_ports().size(); ++i) {
        const std::string m = http_get_metrics((*mesh)->metrics_ports()[i]);
        batches += metric(m, "starmesh_worker_decode_batch_size_count");
        steps += metric(m, "starmesh_worker_decode_batch_size_sum");
      }
      const double wall = std::chrono::duration<double>(last - t0).count();
      nlohmann::json row{{"workers", w},
                         {"mode", kept ? "kept" : "fresh"},
                         {"variant", variant},
                         {"concurrent", c},
                         {"context_tokens", context},
                         {"output_tokens", max_new},
                         {"device", mo.device},
                         {"aggregate_tok_s", double(tokens) / wall},
                         {"ttft_p50_s", percentile(ttft, 0.5)},
                         {"ttft_p99_s", percentile(ttft, 0.99)},
                         {"itl_p50_s", percentile(itl, 0.5)},
                         {"itl_p99_s", percentile(itl, 0.99)},
                         {"mean_decode_batch", batches > 0 ? steps / batches : 0.0},
                         {"failed", failed},
                         {"wall_s", wall}};
      fmt::print("{}\n", row.dump());
      std::fflush(stdout);
      rows.push_back(row);
      // After every level: a later one that fails (out of memory) leaves these behind.
      if (!json_path.empty()) std::ofstream(json_path) << rows.dump(1) << "\n";
    }
  }
  return 0;
}
