#pragma once
// Authenticated data-plane messages: AES-256-GCM used as a MAC only (GMAC: empty plaintext,
// the whole message as additional authenticated data, 16-byte tag), through OpenSSL's EVP
// API, where AES-NI and carry-less multiply run GHASH at several GB/s (HMAC-SHA256 ran at
// 1.7 GB/s, too slow for a per-layer round trip at decode). The request driver makes a key of
// 32 random bytes for each attempt of a request and hands it to the request's hosts over the
// control plane (EncodeOrder::data_plane_key). Per message:
//
//   gcm key = HMAC-SHA256(key, "smdp-v2 gmac key" NUL | session u64)   once per group
//   nonce   = sender u32 | seq u64                                     (little-endian, 12 B)
//   mac     = GCM tag under (gcm key, nonce) of AAD = header || payload, plaintext empty
//   header  = "smdp-v2\0" | session u64 | sender u32 | receiver u32 | tag u64 | seq u64 |
//             payload length u64                                       (little-endian, 48 B)
//
// and travels after its payload as a trailer: seq u64 | mac (24 B). GCM fails completely if
// one (key, nonce) ever tags two messages (two tags give away the hash key, then anything can
// be forged), so the nonce is never chosen by a caller: a MessageAuth seals as one sender
// rank, and each seal takes the next number of that sender's one counter, shared by all its
// receivers. Ranks differ in the nonce; the counter starts over only with a new MessageAuth,
// which is safe because a (key, session) belongs to one attempt, where each rank joins its
// group once (the driver draws a fresh key for every attempt). The session is also hashed into
// the GCM key, so a key reused by mistake for another session still never repeats a nonce.
//
// A receiver rebuilds the header from what it expects (its session, the peer it receives
// from, itself, the tag it posted, the length) and the number the message carries, has GCM
// check the tag (EVP's decrypt-final compares in constant time), and takes each number of a
// sender once (ReplayWindow): an altered, misdirected, forged or replayed message fails.
#include <array>
#include <cstdint>
#include <memory>
#include <span>

#include "starmesh/core/expected.hpp"

struct evp_cipher_ctx_st;  // OpenSSL's EVP_CIPHER_CTX

namespace starmesh {

inline constexpr size_t kMessageKeyBytes = 32;
inline constexpr size_t kMacBytes = 16;    // the GCM tag, full length
inline constexpr size_t kNonceBytes = 12;  // GCM's 96-bit IV: no extra GHASH pass to derive J0
using MessageKey = std::array<uint8_t, kMessageKeyBytes>;
using Mac = std::array<uint8_t, kMacBytes>;
using Nonce = std::array<uint8_t, kNonceBytes>;

// A fresh key from OpenSSL's CSPRNG (RAND_bytes); `internal` if it has no entropy.
Expected<MessageKey> random_message_key();

// The GCM tag of `aad` (plaintext empty) under a 32-byte `key` and `nonce`: the primitive,
// checked on NIST's and IEEE 802.1AE's GMAC vectors. Tests and benches only: the data plane
// seals through MessageAuth, which picks the nonce.
Expected<Mac> aes256_gmac(std::span<const uint8_t> key, const Nonce& nonce, std::span<const uint8_t> aad);

// The AES-256-GCM key of one session (an attempt's id) under the attempt's key.
Expected<MessageKey> session_key(const MessageKey& key, uint64_t session);

Nonce make_nonce(uint32_t sender, uint64_t seq);

// What a message's MAC binds it to.
struct MessageHeader {
  uint64_t session = 0;               // the request's attempt (its mesh id)
  uint32_t sender = 0, receiver = 0;  // ranks in the group
  uint64_t tag = 0;                   // the transport's user tag
  uint64_t seq = 0;                   // the sender's counter, from 1, over all its receivers
  uint64_t length = 0;                // payload bytes
};
inline constexpr size_t kMessageHeaderBytes = 48;
std::array<uint8_t, kMessageHeaderBytes> encode_header(const MessageHeader& h);

// After each payload on the wire: seq (u64 little-endian), then the MAC.
inline constexpr size_t kTrailerBytes = 8 + kMacBytes;

// One rank's sealing and opening in one session. Not thread-safe (it reuses its OpenSSL
// contexts: the key schedule and GHASH tables are made once); one exchange at a time.
class MessageAuth {
 public:
  static Expected<MessageAuth> create(const MessageKey& key, uint64_t session, uint32_t self);

  struct Sealed {
    uint64_t seq = 0;
    Mac mac{};
  };
  // The next number of this sender and the MAC of `payload` to `receiver` under `tag` with
  // it; `internal` if OpenSSL fails or the numbers are used up (2^64 - 1 seals). A number is
  // used up whether or not its message is ever sent.
  Expected<Sealed> seal(std::span<const uint8_t> payload, uint32_t receiver, uint64_t tag);

  // Ok when `mac` is the MAC of `payload` from `sender` to this rank under `tag` and `seq`;
  // else `unauthenticated` ("the MAC does not match"), or `internal` when OpenSSL fails.
  Status open(std::span<const uint8_t> payload, uint32_t sender, uint64_t tag, uint64_t seq,
              std::span<const uint8_t> mac);

  uint64_t sealed() const { return sealed_; }  // numbers used so far (the last one)
  uint32_t self() const { return self_; }
  uint64_t session() const { return session_; }

 private:
  using Ctx = std::unique_ptr<evp_cipher_ctx_st, void (*)(evp_cipher_ctx_st*)>;
  MessageAuth(Ctx seal, Ctx open, uint64_t session, uint32_t self)
      : seal_(std::move(seal)), open_(std::move(open)), session_(session), self_(self) {}
  Ctx seal_, open_;  // keyed once; each message sets only its nonce
  uint64_t session_;
  uint32_t self_;
  uint64_t sealed_ = 0;
};

// The sequence numbers taken from one sender: each is taken once, and none more than kSize
// behind the newest (the anti-replay window of RFC 4303 section 3.4.3). A sender numbers all
// its messages with one counter, so a receiver sees gaps (the numbers of messages to other
// ranks), and messages may be taken out of order across tags (a batch matches in any order):
// never by as much as kSize in this runtime, which works in lock-step per layer (a batch has a
// few messages per peer).
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
