// CPU reference attention with log-sum-exp: per head and chunk of queries, scores through
// BLAS, an exact softmax in float32 with the max subtracted, then P V through BLAS.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "starmesh/backend/cpu_backend.hpp"

namespace starmesh {
namespace {
// Queries per BLAS call: bounds the score buffer at kQueryChunk x nk floats.
constexpr int64_t kQueryChunk = 256;
}  // namespace

Status CpuBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, AttentionMask mask, float scale,
                             const Tensor& o, const Tensor& lse) {
  for (auto [t, what] : {std::pair{&q, "attention q"},
                         {&k, "attention k"},
                         {&v, "attention v"},
                         {&o, "attention o"},
                         {&lse, "attention lse"}}) {
    if (t->dtype() != DType::f32 || t->device().kind != DeviceKind::cpu)
      return make_error(what, ": the CPU backend wants f32 host tensors, got ", dtype_name(t->dtype()));
  }
  SM_TRY(check_attention_args(q, k, v, o, lse, DType::f32));
  const int64_t nq = q.dim(0), hq = q.dim(1), d = q.dim(2), nk = k.dim(0), hkv = k.dim(1);
  const int64_t group = hq / hkv;
  const float* qs = q.data_as<float>();
  const float* ks = k.data_as<float>();
  const float* vs = v.data_as<float>();
  float* os = o.data_as<float>();
  float* ls = lse.data_as<float>();
  const float neg_inf = -std::numeric_limits<float>::infinity();

  // Keys visible to query i: [0, visible(i)).
  auto visible = [&](int64_t i) -> int64_t {
    if (!mask.causal) return nk;
    return std::clamp<int64_t>(i + mask.diagonal + 1, 0, nk);
  };
  const int64_t chunks = (nq + kQueryChunk - 1) / kQueryChunk;
  std::vector<float> scores;
  for (int64_t h = 0; h < hq; ++h) {
    const int64_t kvh = h / group;
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t q0 = c * kQueryChunk, q1 = std::min(nq, q0 + kQueryChunk), rows = q1 - q0;
      const int64_t cols = visible(q1 - 1);  // the widest row of the chunk
      if (cols == 0) {
        for (int64_t i = q0; i < q1; ++i) {
          std::fill_n(os + (i * hq + h) * d, d, 0.0f);
          ls[i * hq + h] = neg_inf;
        }
        continue;
      }
      scores.assign(size_t(rows * cols), 0.0f);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(cols), int(d), scale, qs + (q0 * hq + h) * d,
                  int(hq * d), ks + kvh * d, int(hkv * d), 0.0f, scores.data(), int(cols));
      pool_.parallel_for(rows, [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) {
          float* row = scores.data() + r * cols;
          const int64_t vis = visible(q0 + r);
          if (vis == 0) {
            std::fill_n(row, cols, 0.0f);
            ls[(q0 + r) * hq + h] = neg_inf;
            continue;
          }
          const float m = *std::max_element(row, row + vis);
          double sum = 0;
          for (int64_t j = 0; j < vis; ++j) {
            row[j] = std::exp(row[j] - m);
            sum += row[j];
          }
          const float inv = float(1.0 / sum);
          for (int64_t j = 0; j < vis; ++j) row[j] *= inv;
          std::fill(row + vis, row + cols, 0.0f);
          ls[(q0 + r) * hq + h] = m + float(std::log(sum));
        }
      });
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(rows), int(d), int(cols), 1.0f, scores.data(),
                  int(cols), vs + kvh * d, int(hkv * d), 0.0f, os + (q0 * hq + h) * d, int(hq * d));
    }
  }
  return {};
}

Status CpuBackend::merge_states(std::span<const Tensor> o_parts, std::span<const Tensor> lse_parts, const Tensor& o,
                                const Tensor& lse) {
  SM_TRY(check_merge_args(o_parts, lse_parts, o, lse, DType::f32));
  for (const Tensor* t : {&o, &lse})
    if (t->device().kind != DeviceKind::cpu) return make_error("merge_states: output is not a CPU tensor");
  for (size_t i = 0; i < o_parts.size(); ++i)
    if (o_parts[i].device().kind != DeviceKind::cpu || lse_parts[i].device().kind != DeviceKind::cpu)
      return make_error("merge_states: part ", i, " is not a CPU tensor");
  const int64_t rh = lse.numel(), d = o.dim(2);
  const float neg_inf = -std::numeric_limits<float>::infinity();
  float* os = o.data_as<float>();
  float* ls = lse.data_as<float>();
  for (int64_t idx = 0; idx < rh; ++idx) {
    float m = neg_inf;
    for (const Tensor& l : lse_parts) m = std::max(m, l.data_as<float>()[idx]);
    double sum = 0.0;
    if (m != neg_inf)
      for (const Tensor& l : lse_parts) sum += std::exp(double(l.data_as<float>()[idx]) - m);
    // Accumulated in double: the reference for the device's f32 merge.
    std::vector<double> acc(size_t(d), 0.0);
    for (size_t i = 0; sum > 0.0 && i < o_parts.size(); ++i) {
      const float li = lse_parts[i].data_as<float>()[idx];
      if (li == neg_inf) continue;
      const double w = std::exp(double(li) - m) / sum;
      const float* part = o_parts[i].data_as<float>() + idx * d;
      for (int64_t c = 0; c < d; ++c) acc[size_t(c)] += w * part[c];
    }
    for (int64_t c = 0; c < d; ++c) os[idx * d + c] = float(acc[size_t(c)]);
    ls[idx] = sum > 0.0 ? float(m + std::log(sum)) : neg_inf;
  }
  return {};
}

}  // namespace starmesh
