#pragma once
// Authenticated data-plane messages: HMAC-SHA256 (RFC 2104) under a key of 32 random bytes
// that the request driver makes for each attempt of a request and hands to the request's
// hosts over the control plane (EncodeOrder::data_plane_key). Each message binds its place:
//
//   mac    = HMAC-SHA256(key, payload || header)
//   header = "smdp-v1\0" | session u64 | sender u32 | receiver u32 | tag u64 | seq u64 |
//            payload length u64                        (little-endian, 48 B)
//
// and travels after its payload as a trailer: seq u64 | mac (40 B). The header goes last so a
// sender hashes a payload once for all its receivers (a broadcast) and finishes per receiver.
// A receiver rebuilds the header from what it expects (its session, the peer it receives
// from, itself, the tag it posted, the length) and the sequence number the message carries,
// compares MACs in constant time (CRYPTO_memcmp), and takes each sequence number of a
// direction once (ReplayWindow): an altered, misdirected, forged or replayed message fails.
#include <array>
#include <cstdint>
#include <memory>
#include <span>

#include "starmesh/core/expected.hpp"

struct evp_mac_ctx_st;  // OpenSSL's EVP_MAC_CTX

namespace starmesh {

inline constexpr size_t kMessageKeyBytes = 32;
inline constexpr size_t kMacBytes = 32;
using MessageKey = std::array<uint8_t, kMessageKeyBytes>;
using Mac = std::array<uint8_t, kMacBytes>;

// A fresh key from OpenSSL's CSPRNG (RAND_bytes); `internal` if it has no entropy.
Expected<MessageKey> random_message_key();

// HMAC-SHA256 of `data` under `key` (any length): the primitive, checked on RFC 4231's vectors.
Expected<Mac> hmac_sha256(std::span<const uint8_t> key, std::span<const uint8_t> data);

// What a message's MAC binds it to.
struct MessageHeader {
  uint64_t session = 0;               // the request's attempt (its mesh id)
  uint32_t sender = 0, receiver = 0;  // ranks in the group
  uint64_t tag = 0;                   // the transport's user tag
  uint64_t seq = 0;                   // per direction (sender -> receiver), from 1
  uint64_t length = 0;                // payload bytes
};
inline constexpr size_t kMessageHeaderBytes = 48;
std::array<uint8_t, kMessageHeaderBytes> encode_header(const MessageHeader& h);

// After each payload on the wire: seq (u64 little-endian), then the MAC.
inline constexpr size_t kTrailerBytes = 8 + kMacBytes;

class MessageAuth {
 public:
  static Expected<MessageAuth> create(const MessageKey& key);

  // A payload hashed under the key, to be finished once per header.
  class Partial {
   public:
    Partial() = default;

   private:
    friend class MessageAuth;
    std::shared_ptr<evp_mac_ctx_st> ctx_;
  };
  Expected<Partial> begin(std::span<const uint8_t> payload) const;
  Expected<Mac> finish(const Partial& hashed, const MessageHeader& h) const;
  Expected<Mac> sign(std::span<const uint8_t> payload, const MessageHeader& h) const;

  // Ok when `mac` is the MAC of (payload, h); else `unauthenticated` ("the MAC does not
  // match"), or `internal` when OpenSSL fails. The comparison takes the same time wherever
  // the MACs differ.
  Status verify(std::span<const uint8_t> payload, const MessageHeader& h, std::span<const uint8_t> mac) const;

 private:
  explicit MessageAuth(std::shared_ptr<evp_mac_ctx_st> keyed) : keyed_(std::move(keyed)) {}
  std::shared_ptr<evp_mac_ctx_st> keyed_;  // initialized with the key; copied for each message
};

// The sequence numbers one direction has delivered: each is taken once, and none more than
// kSize behind the newest (the anti-replay window of RFC 4303 section 3.4.3). Messages of a
// direction may be taken out of order across tags (a batch matches in any order), never by
// that much in this runtime, which works in lock-step per layer.
class ReplayWindow {
 public:
  static constexpr uint64_t kSize = 1024;
  // Not taken yet, not too old, not 0 (senders count from 1).
  bool fresh(uint64_t seq) const;
  // Records `seq` as taken: only after its message's MAC verified.
  void accept(uint64_t seq);
  uint64_t newest() const { return newest_; }

 private:
  bool seen(uint64_t seq) const { return (bits_[(seq % kSize) / 64] >> (seq % 64)) & 1u; }
  uint64_t newest_ = 0;
  std::array<uint64_t, kSize / 64> bits_{};  // bit seq % kSize for seq in (newest - kSize, newest]
};

}  // namespace starmesh
