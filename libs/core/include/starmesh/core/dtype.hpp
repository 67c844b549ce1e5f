#pragma once
// Element types and conversions. bf16 and f16 are stored as raw 16-bit patterns.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "starmesh/core/expected.hpp"

namespace starmesh {

enum class DType : uint8_t { f32, f16, bf16, i32 };

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32:
      return 4;
    case DType::i32:
      return 4;
    case DType::f16:
      return 2;
    case DType::bf16:
      return 2;
  }
  return 0;
}

std::string_view dtype_name(DType t);

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even, NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// Converts n elements of `src` (type `from`) to float32.
void convert_to_f32(const void* src, DType from, float* dst, size_t n);
// Converts n float32 elements to type `to` (not i32).
void convert_from_f32(const float* src, DType to, void* dst, size_t n);

}  // namespace starmesh
