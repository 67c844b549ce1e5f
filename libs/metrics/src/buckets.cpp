#include "starmesh/metrics/buckets.hpp"

#include <cmath>
#include <stdexcept>

namespace starmesh::metrics {

std::vector<double> exponential_buckets(double start, double factor, int count) {
  std::vector<double> b;
  for (int i = 0; i < count; ++i) b.push_back(start * std::pow(factor, i));
  return b;
}

std::vector<double> round_buckets(double from, double to) {
  if (!(from > 0) || !(to >= from) || !std::isfinite(to))
    throw std::invalid_argument("round_buckets needs 0 < from <= to");
  std::vector<double> b;
  const int lo = int(std::floor(std::log10(from))) - 1, hi = int(std::ceil(std::log10(to))) + 1;
  for (int e = lo; e <= hi; ++e)
    for (int m : {1, 2, 5}) {
      // 10^|e| is exact for |e| <= 22; dividing by it rounds once: the double nearest m * 10^e.
      const double p = std::pow(10.0, std::abs(e));
      const double v = e >= 0 ? m * p : m / p;
      if (v >= from * (1 - 1e-12) && v <= to * (1 + 1e-12)) b.push_back(v);
    }
  return b;
}

}  // namespace starmesh::metrics
