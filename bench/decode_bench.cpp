// Where a decode step's time goes on the GPU, for a real-size checkpoint: prefill (global) or
// phase 1 (star) of a random context, then greedy decode steps timed one by one, then a few
// steps with every op's GPU time recorded (CUDA events) beside the wall time, and the floor
// from the bytes a step must read (weights + KV) over the measured copy bandwidth.
// --batches 1,4,16,32: then decode steps of that many requests at once (each its own random
// context, one host each, as a worker's DecodeBatcher runs them), timed and profiled the same way;
// with --batch-prefill Q also a step of those B and one more request's Q-token query prefill
// together, against the B steps and that prefill one after the other (DecodeBatcher's choice).
// Usage: decode_bench --model DIR --contexts 32768,131072 [--modes global,star --hosts 4] [--batches ...]
// Prints a table per context and mode and, with --json FILE, one object for each.
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>

#include "starmesh/attention/star_session.hpp"
#include "starmesh/backend/cuda_backend.hpp"
#include "starmesh/model/loaded_model.hpp"
#include "starmesh/model/sampler.hpp"

using namespace starmesh;
using Clock = std::chrono::steady_clock;

namespace {

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

template <class T>
T check(Expected<T> e, const char* what) {
  if (!e) {
    fmt::print(stderr, "{}: {}\n", what, e.error().message);
    std::exit(1);
  }
  return std::move(*e);
}
void check(Status s, const char* what) {
  if (!s) {
    fmt::print(stderr, "{}: {}\n", what, s.message());
    std::exit(1);
  }
}

// Device-to-device copy bandwidth (read + write bytes per second), best of 5.
double copy_bandwidth(backend_i& be) {
  const int64_t n = int64_t(1) << 30;  // 2 GiB of bf16 each way
  Tensor a = check(be.alloc(DType::bf16, {n}), "alloc"), b = check(be.alloc(DType::bf16, {n}), "alloc");
  double best = 1e9;
  for (int i = 0; i < 5; ++i) {
    check(be.synchronize(), "sync");
    const auto t = Clock::now();
    check(be.copy(a, b), "copy");
    check(be.synchronize(), "sync");
    best = std::min(best, since(t));
  }
  return 2.0 * double(a.nbytes()) / best;
}

// Bytes one decode step must read: every weight but the embedding table (a gather), and the
// KV of every cached token.
double step_bytes(const LlamaConfig& c, int64_t cached_tokens) {
  const double h = double(c.hidden_size), f = double(c.intermediate_size), d = double(c.head_dim);
  const double q = double(c.num_attention_heads) * d, kv = double(c.num_key_value_heads) * d;
  const double per_layer = h * (q + 2 * kv) + q * h + 3 * h * f + 2 * h;
  const double weights = (double(c.num_hidden_layers) * per_layer + h + double(c.vocab_size) * h) * 2;
  return weights + double(cached_tokens) * 2 * double(c.num_hidden_layers) * kv * 2;
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(p * double(v.size())))];
}

// A query prefill of q tokens (one more request over its own context of n tokens) inside the
// batch of `hosts` (each one decode step) against the batch and the prefill one after the
// other, `steps` rounds of each: the step times' p50 and the added cost of the prefill each
// way, into `row`.
void time_batch_prefill(const Transformer& model, int64_t n, int64_t q, int steps, std::vector<QueryHost*> hosts,
                        std::vector<remote_partials_i*> remotes, nlohmann::json& row) {
  backend_i& be = model.backend();
  std::mt19937 rng{static_cast<uint32_t>(n * 7 + q)};
  std::uniform_int_distribution<int32_t> pick(0, int32_t(std::min<int64_t>(model.config().vocab_size, 128000) - 1));
  std::vector<int32_t> context(static_cast<size_t>(n)), query(static_cast<size_t>(q));
  for (int32_t& id : context) id = pick(rng);
  for (int32_t& id : query) id = pick(rng);
  // Each round appends the query again (the same cost as a new request's): room for all.
  auto asker = check(StarSession::encode(model, context, StarOptions{n, -1, 1}, q * (2 * int64_t(steps) + 4)),
                     "phase 1 of the prefilling request");
  const std::vector<std::vector<int32_t>> decode_ids(hosts.size(), std::vector<int32_t>{13});
  std::vector<std::vector<int32_t>> fused_ids = decode_ids;
  fused_ids.push_back(query);
  std::vector<QueryHost*> fused_hosts = hosts;
  fused_hosts.push_back(&asker->query_host());
  std::vector<remote_partials_i*> fused_remotes = remotes;
  fused_remotes.push_back(&asker->remotes());
  const auto run_batch = [&](std::span<QueryHost* const> h, std::span<remote_partials_i* const> r,
                             std::span<const std::vector<int32_t>> ids) {
    auto st = check(QueryHost::step_batch(h, r, ids), "batched step");
    for (const Status& o : st.outcome) check(o, "a request of the batch");
  };
  const auto fused = [&] { run_batch(fused_hosts, fused_remotes, fused_ids); };
  const auto apart = [&] {
    run_batch(hosts, remotes, decode_ids);
    check(asker->step(query), "the prefill alone");
  };
  const auto time = [&](const std::function<void()>& fn) {
    std::vector<double> t;
    for (int i = 0; i < steps + 1; ++i) {
      check(be.synchronize(), "sync");
      const auto t0 = Clock::now();
      fn();
      check(be.synchronize(), "sync");
      if (i > 0) t.push_back(since(t0));  // the first picks the GEMMs' algorithms for the shape
    }
    return percentile(t, 0.5);
  };
  const double plain = row["step_p50_s"].get<double>(), with = time(fused), after = time(apart);
  row["prefill_tokens"] = q;
  row["fused_step_p50_s"] = with;
  row["apart_step_p50_s"] = after;
  fmt::print("   with a {}-token query prefill: in the batch {:.2f} ms (+{:.2f}), apart {:.2f} ms (+{:.2f})\n", q,
             with * 1e3, (with - plain) * 1e3, after * 1e3, (after - plain) * 1e3);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Decode-step profile of a checkpoint on the GPU"};
  std::string model_dir, json_path;
  std::vector<std::string> modes{"global"};
  std::vector<int64_t> contexts{32768};
  std::vector<int> batches;
  int steps = 64, profiled = 8, hosts = 4;
  int64_t batch_prefill = 0;
  app.add_option("--model", model_dir)->required();
  app.add_option("--contexts", contexts)->delimiter(',');
  app.add_option("--steps", steps)->check(CLI::Range(2, 4096));
  app.add_option("--profiled-steps", profiled)->check(CLI::Range(1, 256));
  app.add_option("--modes", modes)->delimiter(',')->check(CLI::IsMember({"global", "star"}));
  app.add_option("--hosts", hosts)->check(CLI::Range(1, 64));
  app.add_option("--batches", batches, "Also time batched decode steps of this many requests")
      ->delimiter(',')
      ->check(CLI::Range(1, 256));
  app.add_option("--batch-prefill", batch_prefill,
                 "With --batches: also time a Q-token query prefill inside each batch against it apart")
      ->check(CLI::Range(int64_t(0), int64_t(4096)));
  app.add_option("--json", json_path);
  bool compare_cublaslt = false, compare_fused = false, compare_staging = false;
  app.add_flag("--compare-cublaslt", compare_cublaslt,
               "Also time the steps with one-row matmuls on cuBLASLt instead of the gemv kernel");
  app.add_flag("--compare-fused", compare_fused,
               "Also time the steps with the fused ops (rope_store_kv, gate_up_swiglu, matmul_add) off, "
               "each op on its own");
  app.add_flag("--compare-staging", compare_staging,
               "Also time the steps with small uploads and downloads as plain synchronous copies (no pinned staging)");
  CLI11_PARSE(app, argc, argv);

  const auto tl = Clock::now();
  auto loaded = check(load_model(model_dir, check(parse_device("cuda"), "device"), 0), "load");
  const Transformer& model = *loaded->model;
  auto* cuda = dynamic_cast<CudaBackend*>(loaded->backend.get());
  backend_i& be = *loaded->backend;
  const LlamaConfig& cfg = model.config();
  fmt::print("loaded {} in {:.1f} s; {} layers, hidden {}, vocab {}\n", model_dir, since(tl), cfg.num_hidden_layers,
             cfg.hidden_size, cfg.vocab_size);
  const double bw = copy_bandwidth(be);
  fmt::print("device copy bandwidth {:.0f} GB/s\n", bw / 1e9);

  nlohmann::json rows = nlohmann::json::array();
  // `count` steps with every op timed on the device: prints the ops, returns them for the JSON.
  const auto profile_steps = [&](int count, const std::function<void()>& one_step, nlohmann::json& row) {
    cuda->set_profiling(true);
    const auto tp = Clock::now();
    for (int i = 0; i < count; ++i) one_step();
    const double wall = since(tp) / count;
    cuda->set_profiling(false);
    std::vector<OpTime> ops = check(cuda->take_profile(), "profile");
    std::sort(ops.begin(), ops.end(), [](const OpTime& a, const OpTime& b) { return a.seconds > b.seconds; });
    double gpu = 0;
    int64_t calls = 0;
    for (const OpTime& o : ops) {
      gpu += o.seconds / count;
      calls += o.calls;
    }
    fmt::print("profiled step: wall {:.2f} ms, GPU time in ops {:.2f} ms, {} ops\n", wall * 1e3, gpu * 1e3,
               calls / count);
    nlohmann::json prof = nlohmann::json::array();
    for (const OpTime& o : ops) {
      fmt::print("  {:>9.1f} us  {:>5} calls  {}\n", o.seconds / count * 1e6, o.calls / count, o.op);
      prof.push_back({{"op", o.op}, {"us_per_step", o.seconds / count * 1e6}, {"calls_per_step", o.calls / count}});
    }
    row["profiled_wall_s"] = wall;
    row["profiled_gpu_s"] = gpu;
    row["ops"] = prof;
  };
  for (const int64_t n : contexts)
    for (const std::string& mode : modes) {
      std::mt19937 rng{static_cast<uint32_t>(n)};
      std::uniform_int_distribution<int32_t> pick(0, int32_t(std::min<int64_t>(cfg.vocab_size, 128000) - 1));
      std::vector<int32_t> context(static_cast<size_t>(n));
      for (int32_t& id : context) id = pick(rng);
      const int32_t query = pick(rng);
      Sampler greedy(SamplingParams{});
      std::optional<KvCache> cache;
      std::unique_ptr<StarSession> star;
      std::function<Expected<Tensor>(std::span<const int32_t>)> step;
      // The side-by-side variants' steps.
      const int extra = (int(compare_cublaslt) + int(compare_fused) + int(compare_staging)) * (steps + 2);
      nlohmann::json row{{"mode", mode}, {"context_tokens", n}};

      check(be.synchronize(), "sync");
      const auto t0 = Clock::now();
      Tensor logits;
      if (mode == "global") {
        cache.emplace(check(model.make_cache(n + steps + profiled + 4 + extra), "cache"));
        std::vector<int32_t> prompt = context;
        prompt.push_back(query);
        step = [&](std::span<const int32_t> ids) { return model.forward(ids, *cache); };
        logits = check(step(prompt), "prefill");
      } else {
        StarOptions so{(n + hosts - 1) / hosts, -1, hosts};
        star = check(StarSession::encode(model, context, so, steps + profiled + 4 + extra), "phase 1");
        row["phase1_s"] = star->phase1_seconds();
        row["phase1_host_s"] = star->host_phase1_seconds();
        row["phase1_max_host_s"] = star->phase1_max_host_seconds();
        step = [&](std::span<const int32_t> ids) { return star->step(ids); };
        const auto tq = Clock::now();
        logits = check(step(std::span<const int32_t>(&query, 1)), "query");
        check(be.synchronize(), "sync");
        row["phase2_query_s"] = since(tq);
      }
      int32_t next = check(greedy.next(be, logits), "sample");  // the sample waits for the device
      row["ttft_s"] = since(t0);

      const auto untimed_steps = [&](int count) {
        for (int i = 0; i < count; ++i) {
          Tensor l = check(step(std::span<const int32_t>(&next, 1)), "decode");
          next = check(greedy.next(be, l), "sample");
        }
      };
      // Two steps untimed: the first one-row GEMM of each shape picks its algorithm by timing
      // (once per process, not per request).
      untimed_steps(2);
      const auto timed_steps = [&] {
        std::vector<double> times;
        for (int i = 0; i < steps; ++i) {
          const auto ts = Clock::now();
          Tensor l = check(step(std::span<const int32_t>(&next, 1)), "decode");
          next = check(greedy.next(be, l), "sample");  // waits for the device
          times.push_back(since(ts));
        }
        return times;
      };
      const std::vector<double> per_step = timed_steps();
      double total = 0;
      for (double s : per_step) total += s;
      const double tok_s = double(steps) / total;
      // The same steps (a few tokens further on) with one setting switched (alternative(true)),
      // then back (alternative(false)).
      const auto side_by_side = [&](const char* key, const char* what, const std::function<void(bool)>& alternative) {
        alternative(true);
        untimed_steps(2);
        const std::vector<double> other = timed_steps();
        alternative(false);
        double other_total = 0;
        for (double s : other) other_total += s;
        row[fmt::format("decode_tok_s_{}", key)] = double(steps) / other_total;
        row[fmt::format("decode_p50_s_{}", key)] = percentile(other, 0.5);
        fmt::print("{} at {}: {}: {:.1f} tok/s (p50 {:.2f} ms); as built: {:.1f} tok/s (p50 {:.2f} ms)\n", mode, n,
                   what, double(steps) / other_total, percentile(other, 0.5) * 1e3, tok_s,
                   percentile(per_step, 0.5) * 1e3);
      };
      if (compare_cublaslt)
        side_by_side("cublaslt", "one-row GEMMs on cuBLASLt", [&](bool alt) { cuda->set_gemv(!alt); });
      if (compare_fused) side_by_side("unfused", "fused ops off", [&](bool alt) { cuda->set_fused(!alt); });
      if (compare_staging)
        side_by_side("no_staging", "synchronous small copies", [&](bool alt) { cuda->set_staging(!alt); });
      const double floor_tok_s = bw / step_bytes(cfg, n + 1);
      row["decode_tok_s"] = tok_s;
      row["decode_p50_s"] = percentile(per_step, 0.5);
      row["decode_p99_s"] = percentile(per_step, 0.99);
      row["floor_decode_tok_s"] = floor_tok_s;
      row["copy_bw_bytes_s"] = bw;
      row["peak_gpu_bytes"] = be.peak_memory_bytes();

      fmt::print(
          "\n== {} at {} context tokens: ttft {:.3f} s, decode {:.1f} tok/s (p50 {:.2f} ms), floor {:.1f} tok/s "
          "({:.0f}%)\n",
          mode, n, row["ttft_s"].get<double>(), tok_s, row["decode_p50_s"].get<double>() * 1e3, floor_tok_s,
          100 * tok_s / floor_tok_s);
      if (mode == "star")
        fmt::print("phase 1 {:.3f} s (slowest host {:.3f} s), query through phase 2 {:.1f} ms\n",
                   row["phase1_s"].get<double>(), row["phase1_max_host_s"].get<double>(),
                   row["phase2_query_s"].get<double>() * 1e3);
      // A few steps with every op timed on the device.
      profile_steps(
          profiled,
          [&] {
            Tensor l = check(step(std::span<const int32_t>(&next, 1)), "decode");
            next = check(greedy.next(be, l), "sample");
          },
          row);
      rows.push_back(row);
      star.reset();
      cache.reset();
    }
  // Batched decode: B requests, each its own context on one host, stepped as one batch.
  for (const int64_t n : contexts)
    for (const int b : batches) {
      std::vector<std::unique_ptr<StarSession>> sessions;
      std::vector<QueryHost*> hosts_of;
      std::vector<remote_partials_i*> remotes_of;
      // The steps after the timed ones: the prefill comparison's, two per round.
      const int64_t extra = batch_prefill > 0 ? 2 * int64_t(steps) + 4 : 0;
      for (int r = 0; r < b; ++r) {
        std::mt19937 rng{static_cast<uint32_t>(n * 1000 + r)};
        std::uniform_int_distribution<int32_t> pick(0, int32_t(std::min<int64_t>(cfg.vocab_size, 128000) - 1));
        std::vector<int32_t> context(static_cast<size_t>(n));
        for (int32_t& id : context) id = pick(rng);
        sessions.push_back(
            check(StarSession::encode(model, context, StarOptions{n, -1, 1}, steps + profiled + 8 + extra), "phase 1"));
        const int32_t query = pick(rng);
        check(sessions.back()->step(std::span<const int32_t>(&query, 1)), "query");
        hosts_of.push_back(&sessions.back()->query_host());
        remotes_of.push_back(&sessions.back()->remotes());
      }
      const std::vector<int32_t> ids(static_cast<size_t>(b), 13);  // the token does not change the cost
      const auto one_step = [&] {
        auto st = check(QueryHost::step_batch(hosts_of, remotes_of, ids), "batched decode");
        for (const Status& o : st.outcome) check(o, "a request of the batch");
        check(be.synchronize(), "sync");
      };
      for (int i = 0; i < 2; ++i) one_step();  // the first GEMM of each shape picks its algorithm
      std::vector<double> times;
      for (int i = 0; i < steps; ++i) {
        const auto ts = Clock::now();
        one_step();
        times.push_back(since(ts));
      }
      double total = 0;
      for (double t : times) total += t;
      // Floor: the weights once per step, and every request's KV.
      const double one = step_bytes(cfg, n + 1), weights = step_bytes(cfg, 0);
      const double floor_tok_s = double(b) * bw / (weights + double(b) * (one - weights));
      nlohmann::json row{{"mode", "batched"},
                         {"context_tokens", n},
                         {"batch", b},
                         {"decode_tok_s", double(b) * steps / total},
                         {"step_p50_s", percentile(times, 0.5)},
                         {"step_p99_s", percentile(times, 0.99)},
                         {"floor_decode_tok_s", floor_tok_s},
                         {"peak_gpu_bytes", be.peak_memory_bytes()}};
      fmt::print(
          "\n== batch {} at {} context tokens: {:.1f} tok/s (step p50 {:.2f} ms), floor {:.1f} tok/s ({:.0f}%)\n", b, n,
          row["decode_tok_s"].get<double>(), percentile(times, 0.5) * 1e3, floor_tok_s,
          100 * row["decode_tok_s"].get<double>() / floor_tok_s);
      profile_steps(profiled, one_step, row);
      if (batch_prefill > 0) time_batch_prefill(model, n, batch_prefill, steps, hosts_of, remotes_of, row);
      rows.push_back(row);
    }
  if (!json_path.empty()) std::ofstream(json_path) << rows.dump(1) << "\n";
  return 0;
}
