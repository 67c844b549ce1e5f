#pragma once
// Payloads for data-plane tests: random bytes that both sides can regenerate from a seed,
// and a byte-exact comparison that says where two tensors first differ.
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "starmesh/comm/group_auth.hpp"
#include "starmesh/comm/transport.hpp"

namespace starmesh::test {

// A group key every rank of a test knows without a bootstrap (tests only: keys are random).
// Test cases reuse it in group after group, so nonces repeat across them: harmless with no
// secret at stake; groups alive together in one test differ in session.
inline GroupKey fixed_key(uint8_t fill = 7, uint64_t session = 1) {
  GroupKey k;
  k.key.fill(fill);
  k.session = session;
  return k;
}

// Sizes from 8 B to 4 MB: eager and rendezvous protocols, odd lengths included.
inline const std::vector<size_t> kPayloadSizes = {
    8, 12, 1000, 4096, 8196, 65536, 262152, size_t(1) << 20, size_t(4) << 20};

// Seed of the message from `src` to `dst`, of `bytes`, in round `round`.
inline uint64_t payload_seed(int src, int dst, size_t bytes, int round = 0) {
  return (uint64_t(src) << 48) ^ (uint64_t(dst) << 40) ^ (uint64_t(round) << 32) ^ uint64_t(bytes) ^
         0x9e3779b97f4a7c15ull;
}

// A host tensor of `bytes` bytes (bf16 elements, so `bytes` must be even) of random bits.
inline Tensor random_payload(size_t bytes, uint64_t seed) {
  Tensor t = Tensor::zeros(DType::bf16, {int64_t(bytes / 2)});
  std::mt19937_64 rng(seed);
  auto* p = t.data_as<uint8_t>();
  for (size_t i = 0; i < bytes; i += 8) {
    const uint64_t r = rng() | 1;  // never a zero word
    std::memcpy(p + i, &r, std::min<size_t>(8, bytes - i));
  }
  return t;
}

// A receive buffer of `bytes` filled with a pattern no sender uses, so a receive that
// writes nothing is caught.
inline Tensor receive_buffer(size_t bytes) {
  Tensor t = Tensor::zeros(DType::bf16, {int64_t(bytes / 2)});
  std::memset(t.data(), 0xA5, bytes);
  return t;
}

// "" when equal, else where they first differ.
inline std::string byte_difference(const Tensor& got, const Tensor& want) {
  if (got.nbytes() != want.nbytes())
    return "sizes differ: " + std::to_string(got.nbytes()) + " B vs " + std::to_string(want.nbytes()) + " B";
  const auto* a = got.data_as<const uint8_t>();
  const auto* b = want.data_as<const uint8_t>();
  for (size_t i = 0; i < got.nbytes(); ++i)
    if (a[i] != b[i])
      return "byte " + std::to_string(i) + " of " + std::to_string(got.nbytes()) + ": got " + std::to_string(a[i]) +
             ", want " + std::to_string(b[i]);
  return "";
}

// Turns a failed comparison into an error naming the message.
inline Status expect_bytes(const Tensor& got, const Tensor& want, const std::string& what) {
  const std::string diff = byte_difference(got, want);
  if (diff.empty()) return {};
  return Error{what + ": " + diff};
}

// An error unless `s` failed with a message containing every one of `needles`.
inline Status expect_error(const Status& s, const std::vector<std::string>& needles, const std::string& what) {
  if (s) return Error{what + ": expected an error, got success"};
  for (const std::string& n : needles)
    if (s.message().find(n) == std::string::npos)
      return Error{what + ": the error does not mention '" + n + "': " + s.message()};
  return {};
}

}  // namespace starmesh::test
