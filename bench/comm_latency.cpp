// comm_latency: the per-layer phase-2 exchange of Star Attention over the UCX data plane.
// The query host (rank 0) sends Q [n_q, heads, dim] f32 to the W-1 other ranks and receives
// from each its partial state, o [n_q, heads, dim] f32 and lse [n_q, heads] f32, all in one
// exchange (every send and receive in flight at once). The others receive Q and answer at
// once (no attention is computed: this measures the data plane only). Per configuration:
// W processes forked on this machine, warm-up, then the round trip of each iteration at
// rank 0; the table gives median and p99 in microseconds. --auth on,off measures the
// exchange with every message authenticated (AES-256-GMAC, as the runtime sends them) and bare.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "starmesh/comm/message_auth.hpp"
#include "starmesh/launch/local_group.hpp"

using namespace starmesh;
using Clock = std::chrono::steady_clock;

namespace {

struct QShape {
  int64_t n_q, heads, dim;
};

Tensor random_f32(QShape s, bool with_dim, uint64_t seed) {
  std::vector<int64_t> shape = {s.n_q, s.heads};
  if (with_dim) shape.push_back(s.dim);
  std::vector<float> v(size_t(numel(shape)));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> d(-1, 1);
  for (float& x : v) x = d(rng);
  return Tensor::from_f32(v, shape);
}

constexpr uint64_t kTagQ = 1, kTagO = 2, kTagLse = 3;

// One configuration on every rank; rank 0 prints its table row.
Status run_shape(UcxTransport& t, const std::string& transports, QShape s, int warmup, int iters) {
  const char* auth = t.authenticated() ? "on" : "off";
  const auto deadline = [] { return deadline_in(std::chrono::seconds(10)); };
  const int w = t.size();
  if (t.rank() != 0) {
    Tensor q = random_f32(s, true, 0), o = random_f32(s, true, 1 + uint64_t(t.rank())),
           lse = random_f32(s, false, 100 + uint64_t(t.rank()));
    const Transfer reply[] = {Transfer::send(0, kTagO, o), Transfer::send(0, kTagLse, lse)};
    for (int i = 0; i < warmup + iters; ++i) {
      SM_TRY(t.recv(0, kTagQ, q, deadline()));
      SM_TRY(t.exchange(reply, deadline()));
    }
    return {};
  }
  Tensor q = random_f32(s, true, 7);
  std::vector<Transfer> batch;
  for (int r = 1; r < w; ++r) batch.push_back(Transfer::send(r, kTagQ, q));
  for (int r = 1; r < w; ++r) {
    batch.push_back(Transfer::recv(r, kTagO, random_f32(s, true, 0)));
    batch.push_back(Transfer::recv(r, kTagLse, random_f32(s, false, 0)));
  }
  std::vector<double> us;
  us.reserve(size_t(iters));
  for (int i = 0; i < warmup + iters; ++i) {
    const auto t0 = Clock::now();
    SM_TRY(t.exchange(batch, deadline()));
    const auto t1 = Clock::now();
    if (i >= warmup) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  std::sort(us.begin(), us.end());
  const double median = us[us.size() / 2];
  const double p99 = us[size_t(std::ceil(0.99 * double(us.size()))) - 1];
  const size_t q_bytes = q.nbytes(), reply_bytes = size_t(s.n_q * s.heads * (s.dim + 1)) * 4;
  std::printf("| %-4s | %-3s | %d | %3lld x %3lld | %2lld | %8zu | %8zu | %9.1f | %9.1f |\n", transports.c_str(), auth,
              w, static_cast<long long>(s.heads), static_cast<long long>(s.dim), static_cast<long long>(s.n_q), q_bytes,
              reply_bytes, median, p99);
  std::fflush(stdout);
  return {};
}

// What sealing and opening one message cost alone (AES-256-GMAC over header and payload, as
// the authenticated exchange does once per send and once per receive), for each Q size.
void print_mac_speed(const std::vector<QShape>& shapes, const std::vector<int64_t>& n_qs) {
  const MessageKey key = random_message_key().value();
  auto sender = MessageAuth::create(key, 1, 0).value();
  auto receiver = MessageAuth::create(key, 1, 1).value();
  std::printf("# AES-256-GMAC of one message alone (seal / open):");
  for (const QShape& base : shapes)
    for (int64_t n_q : n_qs) {
      const Tensor q = random_f32({n_q, base.heads, base.dim}, true, 1);
      const std::span<const uint8_t> bytes(q.data_as<const uint8_t>(), q.nbytes());
      int n = 0;
      double seal_us = 0, open_us = 0;
      const auto start = Clock::now();
      while (Clock::now() - start < std::chrono::milliseconds(50) || n < 10) {
        const auto t0 = Clock::now();
        auto sealed = sender.seal(bytes, 1, 1);
        const auto t1 = Clock::now();
        if (!sealed || !receiver.open(bytes, 0, 1, sealed->seq, sealed->mac)) return;
        seal_us += std::chrono::duration<double, std::micro>(t1 - t0).count();
        open_us += std::chrono::duration<double, std::micro>(Clock::now() - t1).count();
        ++n;
      }
      seal_us /= n;
      open_us /= n;
      std::printf(" %zu B %.2f / %.2f us (%.2f / %.2f GB/s);", q.nbytes(), seal_us, open_us,
                  double(q.nbytes()) / seal_us / 1e3, double(q.nbytes()) / open_us / 1e3);
    }
  std::printf("\n");
}

std::string first_line(const char* path) {
  std::ifstream f(path);
  std::string line;
  std::getline(f, line);
  return line;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Phase-2 per-layer exchange latency over UCX (W processes on this machine)"};
  std::vector<int> ranks = {2, 4, 8};
  std::vector<std::string> transports = {"tcp", "shm"};
  std::vector<int64_t> n_qs = {1, 16};
  std::vector<std::string> shapes = {"32x128", "8x64"};
  std::vector<std::string> auths = {"on"};
  int iters = 2000, warmup = 200, spin_us = 0;
  app.add_option("--ranks", ranks, "group sizes W")->delimiter(',');
  app.add_option("--transports", transports, "tcp, shm, auto")->delimiter(',');
  app.add_option("--nq", n_qs, "query rows per exchange")->delimiter(',');
  app.add_option("--shapes", shapes, "heads x head dim, e.g. 32x128 (Llama-3.1-8B) or 8x64 (the tiny model)")
      ->delimiter(',');
  app.add_option("--auth", auths, "on: messages authenticated (the runtime's way); off: bare")
      ->delimiter(',')
      ->check(CLI::IsMember({"on", "off"}));
  app.add_option("--iters", iters, "timed iterations per configuration");
  app.add_option("--warmup", warmup, "untimed iterations first");
  app.add_option("--spin-us", spin_us, "microseconds a wait polls flat out before yielding the CPU between polls");
  CLI11_PARSE(app, argc, argv);

  std::vector<QShape> parsed;
  for (const std::string& s : shapes) {
    const auto x = s.find('x');
    if (x == std::string::npos) {
      std::fprintf(stderr, "--shapes: '%s' is not HEADSxDIM\n", s.c_str());
      return 2;
    }
    parsed.push_back({0, std::stoll(s.substr(0, x)), std::stoll(s.substr(x + 1))});
  }

  std::printf("# comm_latency: %u hardware threads, load average %s, %d iterations after %d warm-up, spin %d us\n",
              std::thread::hardware_concurrency(), first_line("/proc/loadavg").c_str(), iters, warmup, spin_us);
  if (std::find(auths.begin(), auths.end(), "on") != auths.end()) print_mac_speed(parsed, n_qs);
  std::printf("| tls  | auth | W | heads x dim | n_q | Q out (B) | reply/rank (B) | median (us) | p99 (us) |\n");
  std::printf("| ---- | ---- | - | ----------- | --- | --------- | -------------- | ----------- | -------- |\n");
  int failures = 0;
  for (const std::string& tls : transports)
    for (int w : ranks)
      for (const std::string& auth : auths) {
        auto results = run_local_group(
            w,
            [&](LocalBootstrap& b) -> Status {
              SM_ASSIGN(t, connect_ucx(b,
                                       UcxOptions{.transports = tls,
                                                  .net_devices = "lo",
                                                  .spin_before_yield = std::chrono::microseconds(spin_us)},
                                       auth == "on"));
              for (const QShape& base : parsed)
                for (int64_t n_q : n_qs) {
                  SM_TRY(run_shape(*t, tls, {n_q, base.heads, base.dim}, warmup, iters));
                  SM_TRY(b.barrier());
                }
              return {};
            },
            std::chrono::minutes(10));
        for (const Status& s : results)
          if (!s) {
            std::fprintf(stderr, "%s W=%d auth %s: %s\n", tls.c_str(), w, auth.c_str(), s.message().c_str());
            ++failures;
          }
      }
  return failures == 0 ? 0 : 1;
}
