// Times starmesh's attention kernels on the shapes of the CUDA issue: causal GQA prefill
// (32 q / 8 kv heads, d = 128) and phase-2 partial attention (1 and 16 queries over long
// KV shards). Spot-checks rows against a float64 host computation, then prints one line per
// shape: "ours <name> <ms> <TFLOP/s or TB/s>". bench/sdpa_anchor.py times PyTorch on the same.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "starmesh/kernels/attention.hpp"

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

struct Shape {
  std::string name;
  int nq, nk, hq, hkv, d;
  bool causal;
};

// Uniform in [-scale, scale) from a xorshift generator: fast enough for 2^31 values.
std::vector<__nv_bfloat16> random_bf16(size_t n, uint64_t seed, float scale) {
  std::vector<__nv_bfloat16> v(n);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& e : v) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    e = __float2bfloat16((float((x >> 40) & 0xffffff) / 16777216.0f * 2.0f - 1.0f) * scale);
  }
  return v;
}

// float64 attention of one (query, head) row, for spot checks.
void row_reference(const Shape& s, const std::vector<__nv_bfloat16>& q, const std::vector<__nv_bfloat16>& k,
                   const std::vector<__nv_bfloat16>& v, int qi, int h, int64_t diagonal, std::vector<double>& o,
                   double& lse) {
  const int g = h / (s.hq / s.hkv);
  const double scale = 1.0 / std::sqrt(double(s.d));
  std::vector<double> sc;
  double m = -INFINITY;
  for (int j = 0; j < s.nk; ++j) {
    if (s.causal && int64_t(j) > qi + diagonal) break;
    double dot = 0;
    for (int c = 0; c < s.d; ++c)
      dot += double(__bfloat162float(q[(size_t(qi) * s.hq + h) * s.d + c])) *
             __bfloat162float(k[(size_t(j) * s.hkv + g) * s.d + c]);
    sc.push_back(dot * scale);
    m = std::max(m, sc.back());
  }
  double sum = 0;
  for (double& x : sc) sum += (x = std::exp(x - m));
  o.assign(size_t(s.d), 0.0);
  for (size_t j = 0; j < sc.size(); ++j)
    for (int c = 0; c < s.d; ++c) o[size_t(c)] += sc[j] / sum * __bfloat162float(v[(j * s.hkv + g) * s.d + c]);
  lse = m + std::log(sum);
}

}  // namespace

int main(int argc, char** argv) {
  // --quick: the first two shapes; --prefill: the three prefill shapes; --partial: the others.
  const std::string mode = argc > 1 ? argv[1] : "";
  int num_sms = 0;
  check(cudaDeviceGetAttribute(&num_sms, cudaDevAttrMultiProcessorCount, 0), "attribute");
  std::vector<Shape> shapes = {
      {"prefill_causal_4k", 4096, 4096, 32, 8, 128, true},    {"prefill_causal_16k", 16384, 16384, 32, 8, 128, true},
      {"prefill_causal_64k", 65536, 65536, 32, 8, 128, true}, {"partial_q1_32k", 1, 32768, 32, 8, 128, false},
      {"partial_q1_128k", 1, 131072, 32, 8, 128, false},      {"partial_q1_1m", 1, 1048576, 32, 8, 128, false},
      {"partial_q1_2k", 1, 2048, 32, 8, 128, false},          {"partial_q1_8k", 1, 8192, 32, 8, 128, false},
      {"partial_q16_32k", 16, 32768, 32, 8, 128, false},      {"partial_q16_128k", 16, 131072, 32, 8, 128, false},
      {"partial_q16_1m", 16, 1048576, 32, 8, 128, false},
  };
  if (mode == "--quick") shapes.resize(2);
  if (mode == "--prefill") shapes.resize(3);
  if (mode == "--partial") shapes.erase(shapes.begin(), shapes.begin() + 3);
  cudaStream_t stream;
  check(cudaStreamCreate(&stream), "stream");
  cudaEvent_t e0, e1;
  check(cudaEventCreate(&e0), "event");
  check(cudaEventCreate(&e1), "event");
  std::printf("%-22s %10s %12s %10s %s\n", "shape", "ms", "rate", "unit", "check");
  for (const Shape& s : shapes) {
    const size_t nq_el = size_t(s.nq) * s.hq * s.d, nk_el = size_t(s.nk) * s.hkv * s.d;
    auto hq = random_bf16(nq_el, 1, 1.0f), hk = random_bf16(nk_el, 2, 1.0f), hv = random_bf16(nk_el, 3, 1.0f);
    void *dq, *dk, *dv, *doo;
    float* dl;
    // Short K/V fit in the 50 MB L2: timed launches cycle through copies past it (as a decode
    // step meets a layer's KV after 31 other layers' weights and KV went through).
    const size_t kv_bytes = 2 * nk_el * 2;
    const int copies = int(std::min<size_t>(16, (size_t(200) << 20) / kv_bytes + 1));
    check(cudaMalloc(&dq, nq_el * 2), "malloc q");
    check(cudaMalloc(&dk, nk_el * 2 * copies), "malloc k");
    check(cudaMalloc(&dv, nk_el * 2 * copies), "malloc v");
    check(cudaMalloc(&doo, nq_el * 2), "malloc o");
    check(cudaMalloc(&dl, size_t(s.nq) * s.hq * 4), "malloc lse");
    check(cudaMemcpy(dq, hq.data(), nq_el * 2, cudaMemcpyHostToDevice), "copy q");
    for (int c = 0; c < copies; ++c) {
      check(cudaMemcpy(static_cast<char*>(dk) + c * nk_el * 2, hk.data(), nk_el * 2, cudaMemcpyHostToDevice), "copy k");
      check(cudaMemcpy(static_cast<char*>(dv) + c * nk_el * 2, hv.data(), nk_el * 2, cudaMemcpyHostToDevice), "copy v");
    }
    starmesh::kernels::AttentionArgs a;
    a.q = dq;
    a.k = dk;
    a.v = dv;
    a.o = doo;
    a.lse = dl;
    a.nq = s.nq;
    a.nk = s.nk;
    a.hq = s.hq;
    a.hkv = s.hkv;
    a.d = s.d;
    a.causal = s.causal;
    a.diagonal = s.causal ? s.nk - s.nq : 0;
    a.scale = 1.0f / std::sqrt(float(s.d));
    const auto chosen = starmesh::kernels::plan_attention(a, num_sms, true);
    // The chosen plan, then its variants (predict, change, measure): for prefill, the wgmma
    // kernel with the other CTA order, without ping-pong, without overlap, with the other
    // rescale choice; for partials, the other split-KV kernel.
    std::vector<starmesh::kernels::AttentionPlan> plans = {chosen};
    if (chosen.use_decode) {  // decode: the other ring depth, half the splits, the kernels it replaced
      plans.push_back(chosen);
      plans.back().decode_stages = 5 - chosen.decode_stages;
      if (chosen.splits > 1) {
        plans.push_back(chosen);
        plans.back().splits = (chosen.splits + 1) / 2;
        plans.back().keys_per_split = (s.nk + plans.back().splits - 1) / plans.back().splits;
        plans.back().keys_per_split = (plans.back().keys_per_split + 63) / 64 * 64;
        plans.back().splits = (s.nk + plans.back().keys_per_split - 1) / plans.back().keys_per_split;
      }
      plans.push_back(chosen);
      plans.back().use_decode = false;  // mma.sync, one warp computing
      plans.back().skip_idle_warps = true;
    }
    for (auto& p : plans)
      p.workspace_bytes = p.splits > 1 ? size_t(p.splits) * s.nq * s.hq * (size_t(s.d) + 1) * sizeof(float) : 0;
    if (chosen.use_decode) {
    } else if (!chosen.use_wgmma) {                                       // few rows: the other split-KV kernel
      auto other = starmesh::kernels::plan_attention(a, num_sms, false);  // mma.sync
      if (!chosen.use_wgmma_partial) {                                    // the wgmma one, as the plan would set it up
        auto forced = a;
        forced.nq = std::max(a.nq, 17 * a.hkv / a.hq + 1);  // more than 16 rows: the plan picks it
        other = starmesh::kernels::plan_attention(forced, num_sms, true);
        other.workspace_bytes = size_t(other.splits) * s.nq * s.hq * (size_t(s.d) + 1) * sizeof(float);
      }
      plans.push_back(other);
    } else {
      for (int v = 0; v < 4; ++v) {
        plans.push_back(chosen);
        if (v == 0) plans.back().wgmma_group_order = !chosen.wgmma_group_order;
        if (v == 1) plans.back().wgmma_pingpong = !chosen.wgmma_pingpong;
        if (v == 2) plans.back().wgmma_overlap = !chosen.wgmma_overlap;
        if (v == 3) plans.back().wgmma_lazy_rescale = !chosen.wgmma_lazy_rescale;
      }
    }
    for (size_t variant = 0; variant < plans.size(); ++variant) {
      const auto& plan = plans[variant];
      void* ws = nullptr;
      if (plan.workspace_bytes) check(cudaMalloc(&ws, plan.workspace_bytes), "malloc workspace");
      check(cudaMemset(doo, 0xff, nq_el * 2), "poison");  // NaN in bf16
      check(starmesh::kernels::attention_forward(a, plan, ws, stream), "attention");
      check(cudaStreamSynchronize(stream), "sync");
      // Spot check 6 rows against float64.
      std::vector<__nv_bfloat16> ho(nq_el);
      std::vector<float> hl(size_t(s.nq) * s.hq);
      check(cudaMemcpy(ho.data(), doo, nq_el * 2, cudaMemcpyDeviceToHost), "copy o");
      check(cudaMemcpy(hl.data(), dl, hl.size() * 4, cudaMemcpyDeviceToHost), "copy lse");
      double worst = 0;
      std::mt19937 rng(7);
      for (int t = 0; t < 6; ++t) {
        const int qi = int(rng() % uint32_t(s.nq)), h = int(rng() % uint32_t(s.hq));
        std::vector<double> ro;
        double rl;
        row_reference(s, hq, hk, hv, qi, h, a.diagonal, ro, rl);
        double num = 0, den = 0;
        for (int c = 0; c < s.d; ++c) {
          const double got = __bfloat162float(ho[(size_t(qi) * s.hq + h) * s.d + c]);
          num += (got - ro[size_t(c)]) * (got - ro[size_t(c)]);
          den += ro[size_t(c)] * ro[size_t(c)];
        }
        worst = std::max(worst, std::sqrt(num / den));
        worst = std::max(worst, std::fabs(hl[size_t(qi) * s.hq + h] - rl) / std::max(1.0, std::fabs(rl)));
      }
      bool all_finite = true;
      for (auto x : ho) all_finite = all_finite && std::isfinite(__bfloat162float(x));
      // Time: warm up, then the median of repeated launches.
      const int reps = s.nq >= 16384 ? 5 : 30;
      for (int i = 0; i < 3; ++i) check(starmesh::kernels::attention_forward(a, plan, ws, stream), "warmup");
      std::vector<float> times;
      for (int i = 0; i < reps; ++i) {
        a.k = static_cast<char*>(dk) + size_t(i % copies) * nk_el * 2;
        a.v = static_cast<char*>(dv) + size_t(i % copies) * nk_el * 2;
        check(cudaEventRecord(e0, stream), "record");
        check(starmesh::kernels::attention_forward(a, plan, ws, stream), "attention");
        check(cudaEventRecord(e1, stream), "record");
        check(cudaEventSynchronize(e1), "sync");
        float ms;
        check(cudaEventElapsedTime(&ms, e0, e1), "elapsed");
        times.push_back(ms);
      }
      std::sort(times.begin(), times.end());
      const double ms = times[times.size() / 2];
      // Device time alone: 10 launches in a CUDA graph, so no host gap sits between them (the
      // events above also catch the host's launch overhead, which tiny kernels cannot hide).
      constexpr int kGraphLaunches = 10;
      cudaGraph_t graph;
      cudaGraphExec_t exec;
      check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed), "capture");
      for (int i = 0; i < kGraphLaunches; ++i) {
        a.k = static_cast<char*>(dk) + size_t(i % copies) * nk_el * 2;
        a.v = static_cast<char*>(dv) + size_t(i % copies) * nk_el * 2;
        check(starmesh::kernels::attention_forward(a, plan, ws, stream), "attention (captured)");
      }
      check(cudaStreamEndCapture(stream, &graph), "end capture");
      check(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
      std::vector<float> graph_times;
      for (int i = 0; i < 6; ++i) {
        check(cudaEventRecord(e0, stream), "record");
        check(cudaGraphLaunch(exec, stream), "graph");
        check(cudaEventRecord(e1, stream), "record");
        check(cudaEventSynchronize(e1), "sync");
        float gms;
        check(cudaEventElapsedTime(&gms, e0, e1), "elapsed");
        if (i > 0) graph_times.push_back(gms / kGraphLaunches);  // the first launch uploads the graph
      }
      cudaGraphExecDestroy(exec);
      cudaGraphDestroy(graph);
      std::sort(graph_times.begin(), graph_times.end());
      const double graph_ms = graph_times[graph_times.size() / 2];
      a.k = dk;
      a.v = dv;
      double rate;
      const char* unit;
      if (s.nq >= 1024) {  // causal prefill: 4 n^2 d h / 2 flops
        rate = 4.0 * double(s.nq) * s.nk * s.d * s.hq / (s.causal ? 2.0 : 1.0) / (ms * 1e-3) / 1e12;
        unit = "TFLOP/s";
      } else {  // partial: K and V read once
        rate = 2.0 * double(nk_el) * 2 / (ms * 1e-3) / 1e12;
        unit = "TB/s";
      }
      std::printf(
          "%-22s %10.3f %12.1f %10s err=%.2e %s splits=%d pack=%d skip=%d wgmma=%d partial_wgmma=%d pingpong=%d "
          "overlap=%d group_order=%d lazy=%d decode=%d stages=%d graph_ms=%.4f%s\n",
          s.name.c_str(), ms, unit[1] == 'B' ? rate * 1000 : rate, unit[1] == 'B' ? "GB/s" : unit, worst,
          all_finite && worst < 2e-2 ? "ok" : "FAIL", plan.splits, int(plan.pack_heads), int(plan.skip_idle_warps),
          int(plan.use_wgmma), int(plan.use_wgmma_partial), int(plan.wgmma_pingpong), int(plan.wgmma_overlap),
          int(plan.wgmma_group_order), int(plan.wgmma_lazy_rescale), int(plan.use_decode), plan.decode_stages, graph_ms,
          variant == 0 ? " (chosen)" : "");
      if (ws) cudaFree(ws);
    }
    cudaFree(dq);
    cudaFree(dk);
    cudaFree(dv);
    cudaFree(doo);
    cudaFree(dl);
  }
  return 0;
}
