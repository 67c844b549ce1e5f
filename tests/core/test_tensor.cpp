#include <doctest/doctest.h>

#include <cmath>

#include "starmesh/core/tensor.hpp"
#include "starmesh/core/thread_pool.hpp"

using namespace starmesh;

TEST_CASE("bf16 and f16 round trips and rounding") {
  for (float f : {0.0f, 1.0f, -2.5f, 3.14159f, 1e-3f, 65504.0f, -1e-7f}) {
    CHECK(bf16_to_f32(f32_to_bf16(f)) == doctest::Approx(f).epsilon(1.0 / 128));
    if (std::fabs(f) >= 6.2e-5f) CHECK(f16_to_f32(f32_to_f16(f)) == doctest::Approx(f).epsilon(1.0 / 1024));
  }
  CHECK(f32_to_bf16(1.0f) == 0x3f80);
  CHECK(f32_to_f16(1.0f) == 0x3c00);
  CHECK(f16_to_f32(0x0001) == doctest::Approx(5.960464477539063e-08));  // smallest subnormal
  CHECK(std::isinf(f16_to_f32(f32_to_f16(1e6f))));
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
  // Round to nearest even: 1 + 2^-8 is halfway between two bf16 values and goes to even (1.0).
  CHECK(f32_to_bf16(1.0f + 1.0f / 256) == 0x3f80);
  CHECK(f32_to_bf16(1.0f + 3.0f / 256) == 0x3f82);
}

TEST_CASE("tensor rows and reshape share storage, and bad views throw") {
  Tensor t = Tensor::from_f32(std::vector<float>{0, 1, 2, 3, 4, 5}, {3, 2});
  Tensor r = t.rows(1, 3);
  CHECK(r.shape() == Shape{2, 2});
  r.data_as<float>()[0] = 42;
  CHECK(t.to_f32_vector()[2] == 42);
  CHECK(t.reshape({6}).dim(0) == 6);
  CHECK_THROWS(t.rows(2, 4));
  CHECK_THROWS(t.reshape({4}));
  CHECK(expect_tensor(t, DType::f32, {3, -1}, "t"));
  auto st = expect_tensor(t, DType::bf16, {3, 2}, "weight");
  CHECK(st.message() == "weight: expected bf16 [3, 2], got f32 [3, 2]");
}

TEST_CASE("thread pool covers every index once") {
  ThreadPool pool(3);
  std::vector<int> hits(1001, 0);
  for (int rep = 0; rep < 20; ++rep)
    pool.parallel_for(1001, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) ++hits[size_t(i)];
    });
  for (int h : hits) CHECK(h == 20);
}
