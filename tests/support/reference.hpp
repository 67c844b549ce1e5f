#pragma once
// Float64 references and comparison helpers shared by the tests.
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace starmesh::test {

// Uniform random values in [lo, hi): tests never run on zeros.
inline std::vector<float> random_vector(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// ||a - b|| / ||b||, and false if any element of a is not finite.
inline double relative_error(const std::vector<float>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / (den > 0 ? den : 1));
}

inline double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  return relative_error(a, std::vector<double>(b.begin(), b.end()));
}

// Attention in float64 over q [nq, hq, d], k/v [nk, hkv, d]; key j visible to query i iff
// !causal || j <= i + diagonal. o [nq, hq, d], lse [nq, hq] (-inf when nothing is visible).
struct AttentionRef {
  std::vector<double> o, lse;
};
inline AttentionRef attention_f64(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                                  int64_t nq, int64_t nk, int64_t hq, int64_t hkv, int64_t d, bool causal,
                                  int64_t diagonal, double scale) {
  AttentionRef r{std::vector<double>(size_t(nq * hq * d), 0.0), std::vector<double>(size_t(nq * hq), -INFINITY)};
  for (int64_t i = 0; i < nq; ++i)
    for (int64_t h = 0; h < hq; ++h) {
      const int64_t g = h / (hq / hkv);
      std::vector<double> s;
      double m = -INFINITY;
      for (int64_t j = 0; j < nk; ++j) {
        if (causal && j > i + diagonal) break;
        double dot = 0;
        for (int64_t c = 0; c < d; ++c)
          dot += double(q[size_t((i * hq + h) * d + c)]) * k[size_t((j * hkv + g) * d + c)];
        s.push_back(dot * scale);
        m = std::max(m, s.back());
      }
      if (s.empty()) continue;
      double sum = 0;
      for (double& x : s) sum += (x = std::exp(x - m));
      for (size_t j = 0; j < s.size(); ++j)
        for (int64_t c = 0; c < d; ++c)
          r.o[size_t((i * hq + h) * d + c)] += s[j] / sum * v[size_t((int64_t(j) * hkv + g) * d + c)];
      r.lse[size_t(i * hq + h)] = m + std::log(sum);
    }
  return r;
}

}  // namespace starmesh::test
