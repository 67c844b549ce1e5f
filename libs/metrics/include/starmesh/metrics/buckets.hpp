#pragma once
// Histogram bucket bounds.
#include <vector>

namespace starmesh::metrics {

// Bounds from `start`, each `factor` times the last, `count` of them.
std::vector<double> exponential_buckets(double start, double factor, int count);

// 1, 2, 5 times each power of ten from `from` to `to` (both such numbers, from > 0): bounds
// that land on the round targets people set (1 s, 2 s, 5 s), each the double nearest its
// decimal so it prints as written (le="0.05", not 0.05000000000000001).
std::vector<double> round_buckets(double from, double to);

}  // namespace starmesh::metrics
