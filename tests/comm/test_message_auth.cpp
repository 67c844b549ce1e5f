// The data plane's message authentication (message_auth.hpp, group_auth.hpp): AES-256-GMAC on
// the GCM spec's and IEEE 802.1AE's vectors, the session key and header it binds, nonces
// never reused, tampering, wrong keys, misdirection, replays and the window; and its speed.
#include <doctest/doctest.h>

#include <chrono>
#include <set>
#include <string>
#include <vector>

#include "comm/comm_test_support.hpp"
#include "starmesh/comm/group_auth.hpp"
#include "starmesh/comm/message_auth.hpp"

using namespace starmesh;

namespace {

std::string hex(std::span<const uint8_t> b) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (uint8_t x : b) {
    s += digits[x >> 4];
    s += digits[x & 15];
  }
  return s;
}

std::vector<uint8_t> unhex(const std::string& s) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < s.size(); i += 2) out.push_back(uint8_t(std::stoi(s.substr(i, 2), nullptr, 16)));
  return out;
}

Nonce nonce_of(const std::string& s) {
  const auto b = unhex(s);
  REQUIRE(b.size() == kNonceBytes);
  Nonce n{};
  std::copy(b.begin(), b.end(), n.begin());
  return n;
}

std::vector<uint8_t> random_bytes(size_t n, uint64_t seed) {
  const Tensor t = test::random_payload(n, seed);
  const auto* p = t.data_as<const uint8_t>();
  return {p, p + n};
}

MessageKey key_of(uint8_t fill) {
  MessageKey k;
  k.fill(fill);
  return k;
}

MessageKey counting_key() {  // 00 01 02 ... 1f
  MessageKey k;
  for (size_t i = 0; i < k.size(); ++i) k[i] = uint8_t(i);
  return k;
}

constexpr uint64_t kSession = 0x1122334455667788ull;

}  // namespace

TEST_CASE("auth: AES-256-GMAC gives the GCM spec's and IEEE 802.1AE's vectors") {
  struct Vector {
    const char *key, *nonce, *aad, *tag;
  };
  // McGrew and Viega, "The Galois/Counter Mode of Operation", test case 13 (AES-256, nothing
  // to hash); then the GCM-AES-256 integrity-only packets of IEEE 802.1AE's test vectors
  // (bn-randall-test-vectors-0511-v1: 2.1.2, 2.3.2, 2.5.2, 2.7.2), as in OpenSSL's
  // test/recipes/30-test_evp_data/evpmac_common.txt: a whole frame as AAD, plaintext empty.
  const Vector vectors[] = {
      {"0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000", "",
       "530f8afbc74536b9a963b4f1c4cb738b"},
      {"e3c08a8f06c6e3ad95a70557b23f75483ce33021a9c72b7025666204c69c0b72", "12153524c0895e81b2c28465",
       "d609b1f056637a0d46df998d88e5222ab2c2846512153524c0895e8108000f101112131415161718191a1b1c1d1e1f20212223242526272"
       "8"
       "292a2b2c2d2e2f30313233340001",
       "2f0bc5af409e06d609ea8b7d0fa5ea50"},
      {"691d3ee909d7f54167fd1ca0b5d769081f2bde1aee655fdbab80bd5295ae6be7", "f0761e8dcd3d000176d457ed",
       "e20106d7cd0df0761e8dcd3d88e5400076d457ed08000f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f"
       "303132333435363738393a0003",
       "35217c774bbc31b63166bcf9d4abed07"},
      {"83c093b58de7ffe1c0da926ac43fb3609ac1c80fee1b624497ef942e2f79a823", "7cfde9f9e33724c68932d612",
       "84c5d513d2aaf6e5bbd2727788e523008932d6127cfde9f9e33724c608000f101112131415161718191a1b1c1d1e1f20212223242526"
       "2728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f0005",
       "6ee160e8faeca4b36c86b234920ca975"},
      {"4c973dbc7364621674f8b5b89e5c15511fced9216490fb1c1a2caa0ffe0407e5", "7ae8e2ca4ec500012e58495c",
       "68f2e77696ce7ae8e2ca4ec588e541002e58495c08000f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f"
       "303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d0007",
       "00bda1b7e87608bcbf470f12157f4c07"},
  };
  int n = 0;
  for (const Vector& v : vectors) {
    CAPTURE(++n);
    auto mac = aes256_gmac(unhex(v.key), nonce_of(v.nonce), unhex(v.aad));
    REQUIRE(mac);
    CHECK(hex(*mac) == v.tag);
  }
  CHECK_FALSE(aes256_gmac(unhex("0011"), Nonce{}, {}));  // not a 32-byte key
}

TEST_CASE(
    "auth: a message's MAC is GMAC of its 48-byte header then payload, under the session's key and (sender, seq)") {
  const MessageHeader h{kSession, 3, 5, 0xabcdefull, 42, 4};
  const auto b = encode_header(h);
  CHECK(std::string(reinterpret_cast<const char*>(b.data())) == "smdp-v2");
  CHECK(hex(std::span(b).subspan(8, 8)) == "8877665544332211");   // session
  CHECK(hex(std::span(b).subspan(16, 8)) == "0300000005000000");  // sender, receiver
  CHECK(hex(std::span(b).subspan(24, 8)) == "efcdab0000000000");  // tag
  CHECK(hex(std::span(b).subspan(32, 8)) == "2a00000000000000");  // seq
  CHECK(hex(std::span(b).subspan(40, 8)) == "0400000000000000");  // length
  CHECK(hex(make_nonce(3, 0x0102030405060708ull)) == "030000000807060504030201");

  // Known answers from Python (hmac, and the cryptography package's AESGCM): the session key
  // is HMAC-SHA256(key, "smdp-v2 gmac key" NUL | session), and rank 3's first message to
  // rank 5 (tag 0xabcdef, payload 01 02 03 04) carries seq 1 and this tag.
  const MessageKey gcm_key = session_key(counting_key(), kSession).value();
  CHECK(hex(gcm_key) == "6ffd114cb297e9e281a6470e619cbb5ff0954bc301ea363411990eb8b2fddc56");
  auto r3 = MessageAuth::create(counting_key(), kSession, 3).value();
  const std::vector<uint8_t> payload = {1, 2, 3, 4};
  const auto sealed = r3.seal(payload, 5, 0xabcdef).value();
  CHECK(sealed.seq == 1);
  CHECK(hex(sealed.mac) == "b9552e101206bcfe31a042fe1778166b");
  const auto header = encode_header({kSession, 3, 5, 0xabcdef, 1, 4});
  std::vector<uint8_t> aad(header.begin(), header.end());
  aad.insert(aad.end(), payload.begin(), payload.end());
  CHECK(sealed.mac == aes256_gmac(gcm_key, make_nonce(3, 1), aad).value());
  auto r5 = MessageAuth::create(counting_key(), kSession, 5).value();
  CHECK(r5.open(payload, 3, 0xabcdef, 1, sealed.mac));
  // Another session under the same key is another GCM key.
  CHECK(session_key(counting_key(), kSession + 1).value() != gcm_key);
}

TEST_CASE("auth: no two seals use one nonce: one counter per sender over all its receivers, ranks apart") {
  const GroupKey key = test::fixed_key(4, 9);
  auto r0 = GroupAuth::create(key, 0, 4).value();
  const std::vector<uint8_t> q = random_bytes(1024, 1);
  std::set<uint64_t> used;
  uint64_t last = 0;
  for (int round = 0; round < 50; ++round) {
    // The same payload to every peer (a broadcast), to itself, and twice to one peer and tag.
    const GroupAuth::Send sends[] = {{1, 7, q}, {2, 7, q}, {3, 7, q}, {0, 7, q}, {1, 8, q}, {1, 8, q}};
    const auto trailers = r0.seal(sends).value();
    std::set<Trailer> distinct(trailers.begin(), trailers.end());
    CHECK(distinct.size() == trailers.size());  // no two MACs alike, not even of identical sends
    for (const Trailer& t : trailers) {
      uint64_t seq = 0;
      for (int b = 0; b < 8; ++b) seq |= uint64_t(t[size_t(b)]) << (8 * b);
      CHECK(seq == last + 1);  // one counter, one step per seal
      last = seq;
      CHECK(used.insert(seq).second);
    }
  }
  CHECK(r0.sealed() == 300);
  // A batch refused for a bad peer seals nothing; a failed seal never gives a number back.
  const GroupAuth::Send bad[] = {{1, 7, q}, {9, 7, q}};
  CHECK_FALSE(r0.seal(bad));
  CHECK(r0.sealed() == 300);
  // Other ranks count from 1 too: the rank in the nonce keeps them apart.
  CHECK(make_nonce(0, 1) != make_nonce(1, 1));
  CHECK(make_nonce(1, 1ull << 32) != make_nonce(0, (1ull << 32) | 1));  // the fields do not overlap
}

TEST_CASE("auth: open refuses one altered byte of payload, header or tag, a wrong key or receiver, and a cut tag") {
  const std::vector<uint8_t> payload = random_bytes(4096, 3);
  auto sender = MessageAuth::create(key_of(1), kSession, 2).value();
  auto receiver = MessageAuth::create(key_of(1), kSession, 6).value();
  const auto sealed = sender.seal(payload, 6, 77).value();
  REQUIRE(receiver.open(payload, 2, 77, sealed.seq, sealed.mac));
  // Opening holds no state: the same message opens again (the replay window is GroupAuth's).
  REQUIRE(receiver.open(payload, 2, 77, sealed.seq, sealed.mac));

  for (size_t at : {size_t(0), size_t(1), size_t(2047), size_t(4095)})
    for (uint8_t flip : {uint8_t(1), uint8_t(0x80)}) {
      std::vector<uint8_t> bad = payload;
      bad[at] ^= flip;
      CHECK(receiver.open(bad, 2, 77, sealed.seq, sealed.mac).code() == ErrorCode::unauthenticated);
    }
  const std::span<const uint8_t> shorter(payload.data(), payload.size() - 1);
  CHECK(receiver.open(shorter, 2, 77, sealed.seq, sealed.mac).code() == ErrorCode::unauthenticated);      // length
  CHECK(receiver.open(payload, 3, 77, sealed.seq, sealed.mac).code() == ErrorCode::unauthenticated);      // sender
  CHECK(receiver.open(payload, 2, 78, sealed.seq, sealed.mac).code() == ErrorCode::unauthenticated);      // tag
  CHECK(receiver.open(payload, 2, 77, sealed.seq + 1, sealed.mac).code() == ErrorCode::unauthenticated);  // seq
  auto other_receiver = MessageAuth::create(key_of(1), kSession, 7).value();
  CHECK(other_receiver.open(payload, 2, 77, sealed.seq, sealed.mac).code() == ErrorCode::unauthenticated);
  auto other_session = MessageAuth::create(key_of(1), kSession + 1, 6).value();
  CHECK(other_session.open(payload, 2, 77, sealed.seq, sealed.mac).code() == ErrorCode::unauthenticated);
  auto other_key = MessageAuth::create(key_of(2), kSession, 6).value();
  CHECK(other_key.open(payload, 2, 77, sealed.seq, sealed.mac).code() == ErrorCode::unauthenticated);
  for (size_t at : {size_t(0), size_t(7), size_t(15)}) {
    Mac bad = sealed.mac;
    bad[at] ^= 1;
    CHECK(receiver.open(payload, 2, 77, sealed.seq, bad).code() == ErrorCode::unauthenticated);
  }
  const Status cut = receiver.open(payload, 2, 77, sealed.seq, std::span(sealed.mac).first(8));
  CHECK(cut.code() == ErrorCode::unauthenticated);  // a truncated tag is not checked as a shorter one
  CHECK(receiver.open(payload, 2, 77, sealed.seq, Mac{}).code() == ErrorCode::unauthenticated);
  // After all those failures the contexts still work; an empty payload is a message too.
  const auto empty = sender.seal({}, 6, 1).value();
  CHECK(receiver.open({}, 2, 1, empty.seq, empty.mac));
  CHECK(receiver.open(payload, 2, 77, sealed.seq, sealed.mac));
}

TEST_CASE("auth: keys come from the CSPRNG, fresh each time") {
  const MessageKey a = random_message_key().value(), b = random_message_key().value();
  CHECK(a != b);
  CHECK(a != MessageKey{});
}

TEST_CASE("auth: the replay window takes each number once, out of order within its size, nothing older") {
  ReplayWindow w;
  CHECK_FALSE(w.fresh(0));
  CHECK(w.fresh(1));
  w.accept(1);
  CHECK_FALSE(w.fresh(1));
  w.accept(5);  // 2..4 still to come, in any order (or never: they went to other ranks)
  CHECK(w.fresh(3));
  w.accept(3);
  CHECK_FALSE(w.fresh(3));
  CHECK(w.fresh(2));
  CHECK(w.fresh(4));
  CHECK_FALSE(w.fresh(5));
  w.accept(5 + ReplayWindow::kSize - 1);
  CHECK(w.fresh(6));  // still inside
  CHECK_FALSE(w.fresh(5));
  CHECK_FALSE(w.fresh(4));             // fell out of the window: refused although never taken
  w.accept(10 * ReplayWindow::kSize);  // a jump clears everything behind it
  CHECK_FALSE(w.fresh(10 * ReplayWindow::kSize));
  CHECK(w.fresh(10 * ReplayWindow::kSize - 1));
  CHECK_FALSE(w.fresh(9 * ReplayWindow::kSize));
  w.accept(3);  // outside the window: recorded nowhere, changes nothing
  CHECK(w.newest() == 10 * ReplayWindow::kSize);
  CHECK(w.fresh(10 * ReplayWindow::kSize - 1));
}

TEST_CASE("auth: a group opens what its ranks seal to each other, once, under the right rank, tag and session") {
  const GroupKey key = test::fixed_key(5, 77);
  auto r0 = GroupAuth::create(key, 0, 3).value();
  auto r1 = GroupAuth::create(key, 1, 3).value();
  const std::vector<uint8_t> q = random_bytes(1024, 1), a = random_bytes(64, 2);
  // Rank 0 sends q to ranks 1 and 2 (a broadcast: sealed per receiver) and a to rank 1.
  const GroupAuth::Send sends[] = {{1, 10, q}, {2, 10, q}, {1, 11, a}};
  const std::vector<Trailer> t = r0.seal(sends).value();
  REQUIRE(t.size() == 3);
  CHECK(t[0] != t[1]);  // one MAC (and number) per receiver

  // Out of order across tags is fine, and so are the gaps (number 2 went to rank 2); each
  // message opens once.
  CHECK(r1.open(0, 11, a, t[2]));
  CHECK(r1.open(0, 10, q, t[0]));
  const Status replay = r1.open(0, 10, q, t[0]);
  CHECK(replay.code() == ErrorCode::unauthenticated);
  CHECK(replay.message().find("replay") != std::string::npos);

  // Not rank 1's: rank 2's copy of the broadcast, and messages under another tag, sender or
  // session.
  auto r1b = GroupAuth::create(key, 1, 3).value();
  const Status misdirected = r1b.open(0, 10, q, t[1]);
  CHECK(misdirected.code() == ErrorCode::unauthenticated);
  CHECK(misdirected.message().find("does not match") != std::string::npos);
  CHECK(r1b.open(0, 12, q, t[0]).code() == ErrorCode::unauthenticated);  // another tag
  CHECK(r1b.open(2, 10, q, t[0]).code() == ErrorCode::unauthenticated);  // another sender
  auto stranger = GroupAuth::create(test::fixed_key(5, 78), 1, 3).value();
  CHECK(stranger.open(0, 10, q, t[0]).code() == ErrorCode::unauthenticated);  // another attempt
  auto wrong_key = GroupAuth::create(test::fixed_key(6, 77), 1, 3).value();
  CHECK(wrong_key.open(0, 10, q, t[0]).code() == ErrorCode::unauthenticated);

  // A forgery carrying the next number does not use that number up.
  auto r2 = GroupAuth::create(key, 2, 3).value();
  Trailer forged = t[1];
  forged[20] ^= 1;
  CHECK(r2.open(0, 10, q, forged).code() == ErrorCode::unauthenticated);
  Trailer renumbered = t[1];  // the right MAC under another number: the nonce differs
  renumbered[0] ^= 4;
  CHECK(r2.open(0, 10, q, renumbered).code() == ErrorCode::unauthenticated);
  CHECK(r2.open(0, 10, q, t[1]));
  CHECK(r2.open(7, 10, q, t[1]).code() == ErrorCode::internal);  // no such rank: a caller's bug
}

TEST_CASE("auth: speed, sealing and opening one message of 16 KiB and 256 KiB") {
  // Printed, not checked (a shared machine's timing): bench/RESULTS.md has the figures.
  auto sender = MessageAuth::create(key_of(3), kSession, 0).value();
  auto receiver = MessageAuth::create(key_of(3), kSession, 1).value();
  for (size_t bytes : {size_t(16) << 10, size_t(256) << 10}) {
    const std::vector<uint8_t> payload = random_bytes(bytes, bytes);
    using Clock = std::chrono::steady_clock;
    int n = 0;
    double seal_us = 0, open_us = 0;
    const auto start = Clock::now();
    while (Clock::now() - start < std::chrono::milliseconds(100) || n < 10) {
      const auto t0 = Clock::now();
      const auto sealed = sender.seal(payload, 1, 5).value();
      const auto t1 = Clock::now();
      REQUIRE(receiver.open(payload, 0, 5, sealed.seq, sealed.mac));
      const auto t2 = Clock::now();
      seal_us += std::chrono::duration<double, std::micro>(t1 - t0).count();
      open_us += std::chrono::duration<double, std::micro>(t2 - t1).count();
      ++n;
    }
    seal_us /= n;
    open_us /= n;
    MESSAGE("AES-256-GMAC, ", bytes, " B: seal ", seal_us, " us (", double(bytes) / seal_us / 1e3, " GB/s), open ",
            open_us, " us (", double(bytes) / open_us / 1e3, " GB/s), mean of ", n);
  }
}
