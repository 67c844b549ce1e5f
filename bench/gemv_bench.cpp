// One-row GEMMs of a decode step (Llama-3.1-8B shapes) on the H200: the gemv kernel's launch
// variants against cuBLASLt (through CudaBackend with the gemv path off), each checked
// against cuBLASLt's output first, then timed with CUDA events over many back-to-back
// launches, as GB/s of weights read. Usage: gemv_bench [--json FILE]
#include <cuda_runtime.h>
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "starmesh/backend/cuda_backend.hpp"
#include "starmesh/kernels/gemv.hpp"

using namespace starmesh;

namespace {

template <class T>
T check(Expected<T> v, const char* what) {
  if (!v) {
    fmt::print(stderr, "{}: {}\n", what, v.error().message);
    std::exit(1);
  }
  return std::move(*v);
}
void check(Status s, const char* what) {
  if (!s) {
    fmt::print(stderr, "{}: {}\n", what, s.message());
    std::exit(1);
  }
}
void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    fmt::print(stderr, "{}: {}\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

Tensor random_tensor(Shape shape, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(size_t(numel(shape)));
  for (float& x : v) x = u(rng);
  return Tensor::from_f32(v, std::move(shape));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"One-row GEMM variants against cuBLASLt"};
  std::string json_path;
  int reps = 200;
  app.add_option("--json", json_path);
  app.add_option("--reps", reps)->check(CLI::Range(10, 100000));
  CLI11_PARSE(app, argc, argv);

  auto gpu = check(CudaBackend::create(0), "backend");
  auto stream = static_cast<cudaStream_t>(gpu->stream());  // cuBLASLt and the kernel on one stream
  cudaEvent_t e0, e1;
  check(cudaEventCreate(&e0), "event");
  check(cudaEventCreate(&e1), "event");
  struct Shape2 {
    int64_t m, k;
    const char* what;
  };
  const Shape2 shapes[] = {{4096, 4096, "wo"},
                           {6144, 4096, "wqkv"},
                           {28672, 4096, "w_gate_up"},
                           {4096, 14336, "w_down"},
                           {128256, 4096, "lm_head (f32 out)"}};
  struct Variant {
    int unroll, warps;
  };
  const Variant variants[] = {{4, 8}, {8, 8}, {16, 8}, {4, 4}, {8, 4}, {16, 4}, {8, 2}, {16, 2}};
  nlohmann::json rows = nlohmann::json::array();
  for (const Shape2& s : shapes) {
    const bool f32 = s.m == 128256;
    Tensor x = check(gpu->upload(random_tensor({1, s.k}, 1, 1.0f), DType::bf16), "x");
    // Copies of the weight cycled through, more bytes than the 50 MB L2 holds: in a decode step
    // every weight comes from HBM (one copy of wo would be served from L2 after the first rep).
    const Tensor host_w = random_tensor({s.m, s.k}, 2, 0.05f);
    std::vector<Tensor> ws;
    const double bytes = double(s.m) * double(s.k) * 2;
    const int copies = int(std::clamp(std::ceil(256e6 / bytes), 1.0, 16.0));
    for (int i = 0; i < copies; ++i) ws.push_back(check(gpu->upload(host_w, DType::bf16), "w"));
    const Tensor& w = ws[0];
    size_t turn = 0;
    auto next_w = [&]() -> const Tensor& { return ws[turn++ % ws.size()]; };
    const DType ot = f32 ? DType::f32 : DType::bf16;
    Tensor ref = check(gpu->scratch(ot, {1, s.m}), "ref");
    Tensor out = check(gpu->scratch(ot, {1, s.m}), "out");
    gpu->set_gemv(false);
    check(gpu->matmul(x, w, ref), "cublaslt");
    const std::vector<float> want = check(gpu->download(ref), "download").to_f32_vector();
    auto time_it = [&](auto&& launch) {
      check(gpu->synchronize(), "sync");
      for (int i = 0; i < 5; ++i) launch();
      check(gpu->synchronize(), "sync");
      check(cudaEventRecord(e0, stream), "record");
      for (int i = 0; i < reps; ++i) launch();
      check(cudaEventRecord(e1, stream), "record");
      check(cudaEventSynchronize(e1), "sync");
      float ms = 0;
      check(cudaEventElapsedTime(&ms, e0, e1), "elapsed");
      return double(ms) * 1e-3 / reps;
    };
    const double lt = time_it([&] { check(gpu->matmul(x, next_w(), ref), "cublaslt"); });
    nlohmann::json row{
        {"shape", s.what}, {"m", s.m}, {"k", s.k}, {"cublaslt_us", lt * 1e6}, {"cublaslt_gb_s", bytes / lt / 1e9}};
    fmt::print("{:>18} [1 x {}] x [{} x {}]^T: cuBLASLt {:.1f} us ({:.0f} GB/s)\n", s.what, s.k, s.m, s.k, lt * 1e6,
               bytes / lt / 1e9);
    nlohmann::json vs = nlohmann::json::array();
    for (const Variant& v : variants) {
      check(kernels::gemv_bf16_variant(x.data(), w.data(), out.data(), f32, s.m, s.k, v.unroll, v.warps, stream),
            "gemv");
      check(cudaStreamSynchronize(stream), "sync");
      const std::vector<float> got = check(gpu->download(out), "download").to_f32_vector();
      double err = 0, norm = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        err += (got[i] - want[i]) * double(got[i] - want[i]);
        norm += double(want[i]) * want[i];
      }
      const double nmse = err / std::max(norm, 1e-30);
      const double t = time_it([&] {
        check(
            kernels::gemv_bf16_variant(x.data(), next_w().data(), out.data(), f32, s.m, s.k, v.unroll, v.warps, stream),
            "gemv");
      });
      fmt::print("    unroll {:>2}, {} warps/CTA: {:.1f} us ({:.0f} GB/s), nmse vs cuBLASLt {:.1e}\n", v.unroll,
                 v.warps, t * 1e6, bytes / t / 1e9, nmse);
      vs.push_back(
          {{"unroll", v.unroll}, {"warps", v.warps}, {"us", t * 1e6}, {"gb_s", bytes / t / 1e9}, {"nmse", nmse}});
    }
    row["variants"] = vs;
    rows.push_back(row);
  }
  if (!json_path.empty()) std::ofstream(json_path) << rows.dump(2) << "\n";
  return 0;
}
