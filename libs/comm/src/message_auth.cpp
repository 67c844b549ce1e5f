#include "starmesh/comm/message_auth.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <limits>

namespace starmesh {

namespace {

// The oldest error in OpenSSL's queue (the queue is cleared: it is per thread, and a stale
// entry would be read by the next TLS call on this thread).
std::string openssl_error() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  char text[256] = "no detail";
  if (e != 0) ERR_error_string_n(e, text, sizeof text);
  return text;
}

Error failed(const char* what) { return make_error("AES-256-GCM: ", what, " failed: ", openssl_error()); }

void put_u64(uint8_t* at, uint64_t v) {
  for (int i = 0; i < 8; ++i) at[i] = uint8_t(v >> (8 * i));
}
void put_u32(uint8_t* at, uint32_t v) {
  for (int i = 0; i < 4; ++i) at[i] = uint8_t(v >> (8 * i));
}

using CtxPtr = std::unique_ptr<EVP_CIPHER_CTX, void (*)(EVP_CIPHER_CTX*)>;

// A context holding the key schedule and GHASH tables of `key`, to seal (encrypt) or open.
Expected<CtxPtr> keyed(std::span<const uint8_t> key, bool encrypt) {
  if (key.size() != kMessageKeyBytes) return make_error("AES-256-GCM: a key has 32 bytes, not ", key.size());
  CtxPtr ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  if (!ctx) return failed("making a context");
  if (EVP_CipherInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), nullptr, encrypt ? 1 : 0) != 1)
    return failed("setting the key");
  // 12 bytes is GCM's default IV length: said anyway, since the nonce's layout depends on it.
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, int(kNonceBytes), nullptr) != 1)
    return failed("setting the nonce length");
  return ctx;
}

// Starts a message under `nonce` (the key stays) and takes `parts` as authenticated data.
Status start(EVP_CIPHER_CTX* ctx, const Nonce& nonce, std::initializer_list<std::span<const uint8_t>> parts) {
  if (EVP_CipherInit_ex(ctx, nullptr, nullptr, nullptr, nonce.data(), -1) != 1) return failed("setting the nonce");
  for (std::span<const uint8_t> part : parts)
    while (!part.empty()) {  // EVP counts in int: a message over 2 GiB goes in pieces
      const size_t n = std::min<size_t>(part.size(), size_t(1) << 30);
      int out = 0;
      if (EVP_CipherUpdate(ctx, nullptr, &out, part.data(), int(n)) != 1) return failed("hashing");
      part = part.subspan(n);
    }
  return {};
}

Expected<Mac> finish_seal(EVP_CIPHER_CTX* ctx) {
  uint8_t none[16];  // GCM writes nothing at the end: there is no plaintext
  int out = 0;
  if (EVP_EncryptFinal_ex(ctx, none, &out) != 1) return failed("finishing");
  Mac mac{};
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, int(mac.size()), mac.data()) != 1)
    return failed("reading the tag");
  return mac;
}

}  // namespace

Expected<MessageKey> random_message_key() {
  MessageKey key{};
  if (RAND_bytes(key.data(), int(key.size())) != 1)
    return make_error("the CSPRNG (OpenSSL RAND_bytes) gave no key for the data plane: ", openssl_error());
  return key;
}

Expected<Mac> aes256_gmac(std::span<const uint8_t> key, const Nonce& nonce, std::span<const uint8_t> aad) {
  SM_ASSIGN(ctx, keyed(key, true));
  SM_TRY(start(ctx.get(), nonce, {aad}));
  return finish_seal(ctx.get());
}

Expected<MessageKey> session_key(const MessageKey& key, uint64_t session) {
  // HMAC-SHA256 as a PRF (the key is 32 uniform bytes): one call per group, not per message.
  static constexpr char kLabel[] = "smdp-v2 gmac key";  // with its NUL
  uint8_t input[sizeof kLabel + 8];
  std::memcpy(input, kLabel, sizeof kLabel);
  put_u64(input + sizeof kLabel, session);
  MessageKey out{};
  size_t n = 0;
  if (!EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, key.data(), key.size(), input, sizeof input, out.data(),
                 out.size(), &n) ||
      n != out.size())
    return make_error("HMAC-SHA256: deriving the session's AES-256-GCM key failed: ", openssl_error());
  return out;
}

Nonce make_nonce(uint32_t sender, uint64_t seq) {
  Nonce n{};
  put_u32(&n[0], sender);
  put_u64(&n[4], seq);
  return n;
}

std::array<uint8_t, kMessageHeaderBytes> encode_header(const MessageHeader& h) {
  std::array<uint8_t, kMessageHeaderBytes> b{};
  std::memcpy(b.data(), "smdp-v2", 8);  // with its NUL: a domain apart from any other use of the key
  put_u64(&b[8], h.session);
  put_u32(&b[16], h.sender);
  put_u32(&b[20], h.receiver);
  put_u64(&b[24], h.tag);
  put_u64(&b[32], h.seq);
  put_u64(&b[40], h.length);
  return b;
}

Expected<MessageAuth> MessageAuth::create(const MessageKey& key, uint64_t session, uint32_t self) {
  SM_ASSIGN(gcm_key, session_key(key, session));
  SM_ASSIGN(seal, keyed(gcm_key, true));
  SM_ASSIGN(open, keyed(gcm_key, false));
  OPENSSL_cleanse(gcm_key.data(), gcm_key.size());
  return MessageAuth(std::move(seal), std::move(open), session, self);
}

Expected<MessageAuth::Sealed> MessageAuth::seal(std::span<const uint8_t> payload, uint32_t receiver, uint64_t tag) {
  if (sealed_ == std::numeric_limits<uint64_t>::max())
    return make_error("AES-256-GCM: rank ", self_, " has sealed 2^64 - 1 messages in session ", session_,
                      ": its nonces are used up");
  // Taken before anything can fail: a number OpenSSL failed on midway is never used again.
  const uint64_t seq = ++sealed_;
  const auto header = encode_header({session_, self_, receiver, tag, seq, payload.size()});
  SM_TRY(start(seal_.get(), make_nonce(self_, seq), {header, payload}));
  SM_ASSIGN(mac, finish_seal(seal_.get()));
  return Sealed{seq, mac};
}

Status MessageAuth::open(std::span<const uint8_t> payload, uint32_t sender, uint64_t tag, uint64_t seq,
                         std::span<const uint8_t> mac) {
  if (mac.size() != kMacBytes)
    return make_error(ErrorCode::unauthenticated, "the MAC has ", mac.size(), " bytes, not ", kMacBytes);
  const auto header = encode_header({session_, sender, self_, tag, seq, payload.size()});
  SM_TRY(start(open_.get(), make_nonce(sender, seq), {header, payload}));
  // OpenSSL takes the expected tag as non-const; it only reads it.
  Mac expected{};
  std::memcpy(expected.data(), mac.data(), expected.size());
  if (EVP_CIPHER_CTX_ctrl(open_.get(), EVP_CTRL_GCM_SET_TAG, int(expected.size()), expected.data()) != 1)
    return failed("setting the tag to check");
  uint8_t none[16];
  int out = 0;
  // The tag compare (CRYPTO_memcmp inside OpenSSL) takes the same time wherever tags differ.
  // A final that fails means only that: the tag does not match.
  if (EVP_DecryptFinal_ex(open_.get(), none, &out) != 1) {
    ERR_clear_error();
    return make_error(ErrorCode::unauthenticated, "the MAC does not match");
  }
  return {};
}

bool ReplayWindow::fresh(uint64_t seq) const {
  if (seq == 0) return false;
  if (seq > newest_) return true;
  if (newest_ - seq >= kSize) return false;
  return !seen(seq);
}

void ReplayWindow::accept(uint64_t seq) {
  if (seq > newest_) {
    // Slots of the numbers the window moves past are cleared for the new ones.
    if (seq - newest_ >= kSize) {
      bits_.fill(0);
    } else {
      for (uint64_t s = newest_ + 1; s <= seq; ++s) bits_[(s % kSize) / 64] &= ~(uint64_t(1) << (s % 64));
    }
    newest_ = seq;
  } else if (newest_ - seq >= kSize) {
    return;  // outside the window: never fresh, nothing to record
  }
  bits_[(seq % kSize) / 64] |= uint64_t(1) << (seq % 64);
}

}  // namespace starmesh
