#include "starmesh/comm/message_auth.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <cstring>

namespace starmesh {

namespace {

using CtxPtr = std::shared_ptr<EVP_MAC_CTX>;

// The oldest error in OpenSSL's queue (the queue is cleared: it is per thread, and a stale
// entry would be read by the next TLS call on this thread).
std::string openssl_error() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  char text[256] = "no detail";
  if (e != 0) ERR_error_string_n(e, text, sizeof text);
  return text;
}

Error failed(const char* what) { return make_error("HMAC-SHA256: ", what, " failed: ", openssl_error()); }

Expected<CtxPtr> keyed_context(std::span<const uint8_t> key) {
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (!mac) return failed("fetching HMAC");
  CtxPtr ctx(EVP_MAC_CTX_new(mac), EVP_MAC_CTX_free);
  EVP_MAC_free(mac);  // the context holds its own reference
  if (!ctx) return failed("making a context");
  char digest[] = "SHA256";
  const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                               OSSL_PARAM_construct_end()};
  // A zero-length key is valid HMAC; OpenSSL wants a non-null pointer for it.
  static const uint8_t kEmpty = 0;
  if (EVP_MAC_init(ctx.get(), key.empty() ? &kEmpty : key.data(), key.size(), params) != 1)
    return failed("setting the key");
  return ctx;
}

Expected<CtxPtr> copy(const CtxPtr& from) {
  CtxPtr ctx(EVP_MAC_CTX_dup(from.get()), EVP_MAC_CTX_free);
  if (!ctx) return failed("copying a context");
  return ctx;
}

Status update(EVP_MAC_CTX* ctx, std::span<const uint8_t> bytes) {
  if (!bytes.empty() && EVP_MAC_update(ctx, bytes.data(), bytes.size()) != 1) return failed("hashing");
  return {};
}

Expected<Mac> finish_mac(EVP_MAC_CTX* ctx) {
  Mac out{};
  size_t n = 0;
  if (EVP_MAC_final(ctx, out.data(), &n, out.size()) != 1 || n != out.size()) return failed("finishing");
  return out;
}

void put_u64(uint8_t* at, uint64_t v) {
  for (int i = 0; i < 8; ++i) at[i] = uint8_t(v >> (8 * i));
}
void put_u32(uint8_t* at, uint32_t v) {
  for (int i = 0; i < 4; ++i) at[i] = uint8_t(v >> (8 * i));
}

}  // namespace

Expected<MessageKey> random_message_key() {
  MessageKey key{};
  if (RAND_bytes(key.data(), int(key.size())) != 1)
    return make_error("the CSPRNG (OpenSSL RAND_bytes) gave no key for the data plane: ", openssl_error());
  return key;
}

Expected<Mac> hmac_sha256(std::span<const uint8_t> key, std::span<const uint8_t> data) {
  SM_ASSIGN(ctx, keyed_context(key));
  SM_TRY(update(ctx.get(), data));
  return finish_mac(ctx.get());
}

std::array<uint8_t, kMessageHeaderBytes> encode_header(const MessageHeader& h) {
  std::array<uint8_t, kMessageHeaderBytes> b{};
  std::memcpy(b.data(), "smdp-v1", 8);  // with its NUL: a domain apart from any other use of the key
  put_u64(&b[8], h.session);
  put_u32(&b[16], h.sender);
  put_u32(&b[20], h.receiver);
  put_u64(&b[24], h.tag);
  put_u64(&b[32], h.seq);
  put_u64(&b[40], h.length);
  return b;
}

Expected<MessageAuth> MessageAuth::create(const MessageKey& key) {
  SM_ASSIGN(ctx, keyed_context(key));
  return MessageAuth(std::move(ctx));
}

Expected<MessageAuth::Partial> MessageAuth::begin(std::span<const uint8_t> payload) const {
  SM_ASSIGN(ctx, copy(keyed_));
  SM_TRY(update(ctx.get(), payload));
  Partial p;
  p.ctx_ = std::move(ctx);
  return p;
}

Expected<Mac> MessageAuth::finish(const Partial& hashed, const MessageHeader& h) const {
  if (!hashed.ctx_) return make_error("HMAC-SHA256: finish() of a payload never begun");
  SM_ASSIGN(ctx, copy(hashed.ctx_));
  const auto header = encode_header(h);
  SM_TRY(update(ctx.get(), header));
  return finish_mac(ctx.get());
}

Expected<Mac> MessageAuth::sign(std::span<const uint8_t> payload, const MessageHeader& h) const {
  SM_ASSIGN(ctx, copy(keyed_));
  const auto header = encode_header(h);
  SM_TRY(update(ctx.get(), payload));
  SM_TRY(update(ctx.get(), header));
  return finish_mac(ctx.get());
}

Status MessageAuth::verify(std::span<const uint8_t> payload, const MessageHeader& h,
                           std::span<const uint8_t> mac) const {
  SM_ASSIGN(want, sign(payload, h));
  if (mac.size() != want.size() || CRYPTO_memcmp(mac.data(), want.data(), want.size()) != 0)
    return make_error(ErrorCode::unauthenticated, "the MAC does not match");
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
