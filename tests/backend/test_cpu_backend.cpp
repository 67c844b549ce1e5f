// Every CPU backend op against a float64 computation on random inputs, and its bad-input errors.
#include <doctest/doctest.h>

#include <cmath>

#include "starmesh/backend/cpu_backend.hpp"
#include "support/reference.hpp"

using namespace starmesh;
using starmesh::test::random_vector;
using starmesh::test::relative_error;

namespace {
struct Fixture {
  ThreadPool pool{2};
  CpuBackend cpu{pool};
};
Tensor filled(const std::vector<float>& v, Shape s) { return Tensor::from_f32(v, std::move(s)); }
}  // namespace

TEST_CASE_FIXTURE(Fixture, "cpu matmul equals float64 x w^T") {
  for (auto [n, k, m] : {std::tuple{1, 64, 48}, {17, 128, 96}, {300, 33, 5}}) {
    auto xv = random_vector(size_t(n * k), 1), wv = random_vector(size_t(m * k), 2);
    Tensor x = filled(xv, {n, k}), w = filled(wv, {m, k});
    Tensor out = Tensor::from_f32(random_vector(size_t(n * m), 9), {n, m});  // poisoned
    REQUIRE(cpu.matmul(x, w, out));
    std::vector<double> ref(size_t(n * m));
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < m; ++j) {
        double s = 0;
        for (int c = 0; c < k; ++c) s += double(xv[size_t(i * k + c)]) * wv[size_t(j * k + c)];
        ref[size_t(i * m + j)] = s;
      }
    CHECK(relative_error(out.to_f32_vector(), ref) < 1e-6);
  }
  Tensor x = Tensor::zeros(DType::f32, {2, 3}), w = Tensor::zeros(DType::f32, {4, 5}),
         out = Tensor::zeros(DType::f32, {2, 4});
  auto st = cpu.matmul(x, w, out);
  REQUIRE_FALSE(st);
  CHECK(st.message().find("do not fit") != std::string::npos);
}

TEST_CASE_FIXTURE(Fixture, "cpu rms_norm equals float64") {
  const int n = 5, d = 96;
  auto xv = random_vector(n * d, 3, -4, 4), wv = random_vector(d, 4, 0.5f, 1.5f);
  Tensor out = Tensor::zeros(DType::f32, {n, d});
  REQUIRE(cpu.rms_norm(filled(xv, {n, d}), filled(wv, {d}), 1e-5f, out));
  std::vector<double> ref(n * d);
  for (int i = 0; i < n; ++i) {
    double ss = 0;
    for (int j = 0; j < d; ++j) ss += double(xv[i * d + j]) * xv[i * d + j];
    const double r = 1 / std::sqrt(ss / d + 1e-5);
    for (int j = 0; j < d; ++j) ref[i * d + j] = xv[i * d + j] * r * wv[j];
  }
  CHECK(relative_error(out.to_f32_vector(), ref) < 1e-6);
  CHECK_FALSE(cpu.rms_norm(filled(xv, {n, d}), filled(wv, {d}), 1e-5f, Tensor::zeros(DType::bf16, {n, d})));
}

TEST_CASE_FIXTURE(Fixture, "cpu rope equals float64 rotate-half") {
  const int n = 7, h = 3, d = 16;
  auto xv = random_vector(n * h * d, 5);
  auto fv = random_vector(d / 2, 6, 1e-4f, 1.0f);
  std::vector<int32_t> pos = {0, 1, 5, 100, 4095, 70000, 3};
  Tensor x = filled(xv, {n, h, d});
  REQUIRE(cpu.rope(x, Tensor::from_i32(pos, {n}), filled(fv, {d / 2})));
  std::vector<double> ref(xv.size());
  for (int i = 0; i < n; ++i)
    for (int hh = 0; hh < h; ++hh)
      for (int f = 0; f < d / 2; ++f) {
        const double a = double(float(pos[i]) * fv[f]);  // HF's float32 angle
        const size_t base = size_t((i * h + hh) * d);
        const double x1 = xv[base + f], x2 = xv[base + f + d / 2];
        ref[base + f] = x1 * std::cos(a) - x2 * std::sin(a);
        ref[base + f + d / 2] = x2 * std::cos(a) + x1 * std::sin(a);
      }
  CHECK(relative_error(x.to_f32_vector(), ref) < 1e-6);
}

TEST_CASE_FIXTURE(Fixture, "cpu swiglu, add and embedding equal float64") {
  const int n = 4, f = 40;
  auto g = random_vector(n * f, 7, -6, 6), u = random_vector(n * f, 8);
  Tensor out = Tensor::zeros(DType::f32, {n, f});
  REQUIRE(cpu.swiglu(filled(g, {n, f}), filled(u, {n, f}), out));
  std::vector<double> ref(g.size());
  for (size_t i = 0; i < g.size(); ++i) ref[i] = g[i] / (1 + std::exp(-double(g[i]))) * u[i];
  CHECK(relative_error(out.to_f32_vector(), ref) < 1e-6);

  REQUIRE(cpu.add(filled(g, {n, f}), filled(u, {n, f}), out));
  for (size_t i = 0; i < g.size(); ++i) ref[i] = double(g[i]) + u[i];
  CHECK(relative_error(out.to_f32_vector(), ref) < 1e-7);

  auto table = random_vector(10 * 6, 9);
  Tensor emb = Tensor::zeros(DType::f32, {3, 6});
  REQUIRE(cpu.embedding(Tensor::from_i32(std::vector<int32_t>{9, 0, 4}, {3}), filled(table, {10, 6}), emb));
  auto e = emb.to_f32_vector();
  CHECK(e[0] == table[54]);
  CHECK(e[6] == table[0]);
  CHECK(e[17] == table[29]);
  auto bad = cpu.embedding(Tensor::from_i32(std::vector<int32_t>{3, 10, 1}, {3}), filled(table, {10, 6}), emb);
  REQUIRE_FALSE(bad);
  CHECK(bad.message().find("token id 10") != std::string::npos);
}

TEST_CASE_FIXTURE(Fixture, "cpu fused gate_up_swiglu and matmul_add equal float64, and refuse shapes that do not fit") {
  const int n = 3, k = 24, f = 10;
  auto xv = random_vector(n * k, 11), wv = random_vector(2 * f * k, 12), dv = random_vector(k * f, 13),
       rv = random_vector(n * k, 14);
  const auto dot = [](const float* a, const float* b, int len) {
    double s = 0;
    for (int c = 0; c < len; ++c) s += double(a[c]) * b[c];
    return s;
  };
  Tensor act = Tensor::zeros(DType::f32, {n, f});
  REQUIRE(cpu.gate_up_swiglu(filled(xv, {n, k}), filled(wv, {2 * f, k}), act));
  std::vector<double> ref(size_t(n * f));
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < f; ++j) {
      const double g = dot(&xv[size_t(i * k)], &wv[size_t(j * k)], k);
      const double u = dot(&xv[size_t(i * k)], &wv[size_t((f + j) * k)], k);
      ref[size_t(i * f + j)] = g / (1 + std::exp(-g)) * u;
    }
  CHECK(relative_error(act.to_f32_vector(), ref) < 1e-5);

  const std::vector<float> a = act.to_f32_vector();
  Tensor resid = filled(rv, {n, k});
  REQUIRE(cpu.matmul_add(act, filled(dv, {k, f}), resid));
  std::vector<double> sum(size_t(n * k));
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < k; ++j)
      sum[size_t(i * k + j)] = rv[size_t(i * k + j)] + dot(&a[size_t(i * f)], &dv[size_t(j * f)], f);
  CHECK(relative_error(resid.to_f32_vector(), sum) < 1e-6);

  auto odd = cpu.gate_up_swiglu(filled(xv, {n, k}), Tensor::zeros(DType::f32, {2 * f + 1, k}), act);
  REQUIRE_FALSE(odd);
  CHECK(odd.message().find("do not fit") != std::string::npos);
}

TEST_CASE_FIXTURE(Fixture, "cpu attention with lse equals float64 over masks and GQA") {
  struct Case {
    int64_t nq, nk, hq, hkv, d;
    bool causal;
    int64_t diag;
  };
  const Case cases[] = {
      {1, 1, 2, 1, 8, false, 0},     {5, 37, 8, 2, 16, false, 0}, {37, 37, 4, 4, 16, true, 0},
      {6, 300, 8, 2, 32, true, 294}, {3, 10, 2, 2, 8, true, -2},  // first query sees nothing
      {600, 600, 2, 1, 16, true, 0},                              // several query chunks
  };
  uint64_t seed = 100;
  for (const Case& c : cases) {
    auto q = random_vector(size_t(c.nq * c.hq * c.d), ++seed, -2, 2);
    auto k = random_vector(size_t(c.nk * c.hkv * c.d), ++seed, -2, 2);
    auto v = random_vector(size_t(c.nk * c.hkv * c.d), ++seed);
    Tensor o = Tensor::from_f32(random_vector(q.size(), 1), {c.nq, c.hq, c.d});
    Tensor lse = Tensor::from_f32(random_vector(size_t(c.nq * c.hq), 2), {c.nq, c.hq});
    const float scale = float(1 / std::sqrt(double(c.d)));
    REQUIRE(cpu.attention(filled(q, {c.nq, c.hq, c.d}), filled(k, {c.nk, c.hkv, c.d}), filled(v, {c.nk, c.hkv, c.d}),
                          {c.causal, c.diag}, scale, o, lse));
    auto ref = starmesh::test::attention_f64(q, k, v, c.nq, c.nk, c.hq, c.hkv, c.d, c.causal, c.diag, scale);
    CAPTURE(c.nq);
    CAPTURE(c.nk);
    CHECK(relative_error(o.to_f32_vector(), ref.o) < 1e-5);
    auto l = lse.to_f32_vector();
    for (size_t i = 0; i < l.size(); ++i) {
      if (std::isinf(ref.lse[i]))
        CHECK((std::isinf(l[i]) && l[i] < 0));
      else
        CHECK(l[i] == doctest::Approx(ref.lse[i]).epsilon(1e-5));
    }
  }
  Tensor q = Tensor::zeros(DType::f32, {1, 3, 8}), k = Tensor::zeros(DType::f32, {4, 2, 8});
  auto st = cpu.attention(q, k, k, {}, 1.0f, q, Tensor::zeros(DType::f32, {1, 3}));
  REQUIRE_FALSE(st);
  CHECK(st.message().find("3 query heads") != std::string::npos);
}

TEST_CASE_FIXTURE(Fixture, "cpu merge_states of per-segment attention equals float64 attention over all keys") {
  const int64_t nq = 3, nk = 90, hq = 4, hkv = 2, d = 16;
  auto q = random_vector(size_t(nq * hq * d), 7, -2, 2);
  auto k = random_vector(size_t(nk * hkv * d), 8, -2, 2);
  auto v = random_vector(size_t(nk * hkv * d), 9);
  const float scale = float(1 / std::sqrt(double(d)));
  Tensor qt = filled(q, {nq, hq, d}), kt = filled(k, {nk, hkv, d}), vt = filled(v, {nk, hkv, d});
  // Keys cut into uneven segments, plus one part that saw no key (lse = -inf).
  std::vector<Tensor> os, ls;
  for (auto [b, e] : {std::pair<int64_t, int64_t>{0, 7}, {7, 50}, {50, 90}, {90, 90}}) {
    os.push_back(Tensor::zeros(DType::f32, {nq, hq, d}));
    ls.push_back(Tensor::zeros(DType::f32, {nq, hq}));
    if (b == e)
      std::fill_n(ls.back().data_as<float>(), nq * hq, -INFINITY);
    else
      REQUIRE(cpu.attention(qt, kt.rows(b, e), vt.rows(b, e), {}, scale, os.back(), ls.back()));
  }
  Tensor o = Tensor::zeros(DType::f32, {nq, hq, d}), lse = Tensor::zeros(DType::f32, {nq, hq});
  REQUIRE(cpu.merge_states(os, ls, o, lse));
  auto ref = starmesh::test::attention_f64(q, k, v, nq, nk, hq, hkv, d, false, 0, scale);
  CHECK(relative_error(o.to_f32_vector(), ref.o) < 1e-5);
  auto l = lse.to_f32_vector();
  for (size_t i = 0; i < l.size(); ++i) CHECK(l[i] == doctest::Approx(ref.lse[i]).epsilon(1e-5));

  // Only empty parts: o = 0, lse = -inf, no NaN.
  std::vector<Tensor> empty_o{os[3], os[3]}, empty_l{ls[3], ls[3]};
  REQUIRE(cpu.merge_states(empty_o, empty_l, o, lse));
  for (float x : o.to_f32_vector()) CHECK(x == 0.0f);
  for (float x : lse.to_f32_vector()) CHECK((std::isinf(x) && x < 0));

  // attention_segments: the same in one call (the empty segment included).
  std::vector<Tensor> ks, vs;
  for (auto [b, e] : {std::pair<int64_t, int64_t>{0, 7}, {7, 50}, {50, 90}, {90, 90}}) {
    ks.push_back(kt.rows(b, e));
    vs.push_back(vt.rows(b, e));
  }
  Tensor so = Tensor::zeros(DType::f32, {nq, hq, d}), sl = Tensor::zeros(DType::f32, {nq, hq});
  REQUIRE(cpu.attention_segments(qt, ks, vs, scale, so, sl));
  REQUIRE(cpu.merge_states(os, ls, o, lse));  // the per-segment states again (o held the empty merge)
  CHECK(so.to_f32_vector() == o.to_f32_vector());
  CHECK(sl.to_f32_vector() == lse.to_f32_vector());
  CHECK(cpu.attention_segments(qt, ks, {vs.data(), 2}, scale, so, sl).message().find("4 key and 2 value") !=
        std::string::npos);

  // attention_batch: row i over its own segments, as attention_segments gives row i alone.
  const std::vector<backend_i::SegmentList> items{
      {{ks.data(), 2}, {vs.data(), 2}}, {ks, vs}, {{ks.data() + 2, 1}, {vs.data() + 2, 1}}};
  Tensor bo = Tensor::zeros(DType::f32, {nq, hq, d}), bl = Tensor::zeros(DType::f32, {nq, hq});
  REQUIRE(cpu.attention_batch(qt, items, scale, bo, bl));
  for (int64_t i = 0; i < nq; ++i) {
    Tensor oi = Tensor::zeros(DType::f32, {1, hq, d}), li = Tensor::zeros(DType::f32, {1, hq});
    REQUIRE(cpu.attention_segments(qt.rows(i, i + 1), items[size_t(i)].keys, items[size_t(i)].values, scale, oi, li));
    CAPTURE(i);
    CHECK(bo.rows(i, i + 1).to_f32_vector() == oi.to_f32_vector());
    CHECK(bl.rows(i, i + 1).to_f32_vector() == li.to_f32_vector());
  }
  CHECK(cpu.attention_batch(qt, {items.data(), 2}, scale, bo, bl).message().find("for 2 items") != std::string::npos);

  // scatter_rows: row i of the source into destination i.
  Tensor rows_dst = Tensor::zeros(DType::f32, {nq * 2, hq, d});
  const std::vector<Tensor> dst{rows_dst.rows(5, 6), rows_dst.rows(0, 1), rows_dst.rows(2, 3)};
  REQUIRE(cpu.scatter_rows(qt, dst));
  for (int64_t i = 0; i < nq; ++i) CHECK(dst[size_t(i)].to_f32_vector() == qt.rows(i, i + 1).to_f32_vector());
  CHECK(rows_dst.rows(1, 2).to_f32_vector() == std::vector<float>(size_t(hq * d), 0.0f));
  CHECK(cpu.scatter_rows(qt, {dst.data(), 2}).message().find("for 2 destinations") != std::string::npos);

  // Bad input names what is wrong.
  CHECK(cpu.merge_states({}, {}, o, lse).message().find("no parts") != std::string::npos);
  CHECK(cpu.merge_states(os, {ls.data(), 2}, o, lse).message().find("4 o parts but 2") != std::string::npos);
  CHECK(cpu.merge_states(os, ls, os[1], lse).message().find("aliases the output") != std::string::npos);
  CHECK_FALSE(cpu.merge_states(os, ls, Tensor::zeros(DType::f32, {nq, hq, d + 1}), lse));
}
