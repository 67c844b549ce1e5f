// The data plane's message authentication (message_auth.hpp, group_auth.hpp): HMAC-SHA256 on
// RFC 4231's vectors, the header it binds, tampering, wrong keys, replays and the window.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "comm/comm_test_support.hpp"
#include "starmesh/comm/group_auth.hpp"
#include "starmesh/comm/message_auth.hpp"

using namespace starmesh;

namespace {

std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }
std::vector<uint8_t> repeat(uint8_t b, size_t n) { return std::vector<uint8_t>(n, b); }

std::string hex(std::span<const uint8_t> b) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (uint8_t x : b) {
    s += digits[x >> 4];
    s += digits[x & 15];
  }
  return s;
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

const MessageHeader kHeader{0x1122334455667788ull, 3, 5, 0xabcdefull, 42, 4};

}  // namespace

TEST_CASE("HMAC-SHA256 gives RFC 4231's test vectors") {
  struct Vector {
    std::vector<uint8_t> key, data;
    std::string mac;  // hex; case 5 is truncated to 128 bits
  };
  std::vector<uint8_t> key4;
  for (uint8_t b = 1; b <= 25; ++b) key4.push_back(b);
  const Vector vectors[] = {
      {repeat(0x0b, 20), bytes("Hi There"), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
      {bytes("Jefe"), bytes("what do ya want for nothing?"),
       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
      {repeat(0xaa, 20), repeat(0xdd, 50), "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
      {key4, repeat(0xcd, 50), "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
      {repeat(0x0c, 20), bytes("Test With Truncation"), "a3b6167473100ee06e0c796c2955552b"},
      {repeat(0xaa, 131), bytes("Test Using Larger Than Block-Size Key - Hash Key First"),
       "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
      {repeat(0xaa, 131),
       bytes("This is a test using a larger than block-size key and a larger than block-size data. The key needs "
             "to be hashed before being used by the HMAC algorithm."),
       "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
  };
  int n = 0;
  for (const Vector& v : vectors) {
    CAPTURE(++n);
    auto mac = hmac_sha256(v.key, v.data);
    REQUIRE(mac);
    CHECK(hex(*mac).substr(0, v.mac.size()) == v.mac);
  }
}

TEST_CASE("a message's MAC is HMAC-SHA256 over its payload, then its 48-byte little-endian header") {
  const auto h = encode_header(kHeader);
  CHECK(std::string(reinterpret_cast<const char*>(h.data())) == "smdp-v1");
  CHECK(hex(std::span(h).subspan(8, 8)) == "8877665544332211");   // session
  CHECK(hex(std::span(h).subspan(16, 8)) == "0300000005000000");  // sender, receiver
  CHECK(hex(std::span(h).subspan(24, 8)) == "efcdab0000000000");  // tag
  CHECK(hex(std::span(h).subspan(32, 8)) == "2a00000000000000");  // seq
  CHECK(hex(std::span(h).subspan(40, 8)) == "0400000000000000");  // length

  const MessageKey key = key_of(9);
  const std::vector<uint8_t> payload = {1, 2, 3, 4};
  auto auth = MessageAuth::create(key).value();
  std::vector<uint8_t> whole = payload;
  whole.insert(whole.end(), h.begin(), h.end());
  CHECK(auth.sign(payload, kHeader).value() == hmac_sha256(key, whole).value());
  // Hashed once, finished per header: the same MACs.
  auto hashed = auth.begin(payload).value();
  MessageHeader other = kHeader;
  other.receiver = 6;
  CHECK(auth.finish(hashed, kHeader).value() == auth.sign(payload, kHeader).value());
  CHECK(auth.finish(hashed, other).value() == auth.sign(payload, other).value());
  CHECK(auth.sign(payload, kHeader).value() != auth.sign(payload, other).value());
}

TEST_CASE("verify refuses one altered byte of payload or header, a wrong key and a cut MAC") {
  const std::vector<uint8_t> payload = random_bytes(4096, 3);
  auto auth = MessageAuth::create(key_of(1)).value();
  const Mac mac = auth.sign(payload, kHeader).value();
  REQUIRE(auth.verify(payload, kHeader, mac));

  for (size_t at : {size_t(0), size_t(1), size_t(2047), size_t(4095)})
    for (uint8_t flip : {uint8_t(1), uint8_t(0x80)}) {
      std::vector<uint8_t> bad = payload;
      bad[at] ^= flip;
      const Status s = auth.verify(bad, kHeader, mac);
      CHECK(s.code() == ErrorCode::unauthenticated);
    }
  std::vector<MessageHeader> headers(6, kHeader);
  headers[0].session ^= 1;
  headers[1].sender ^= 1;
  headers[2].receiver ^= 1;
  headers[3].tag ^= 1;
  headers[4].seq ^= 1;
  headers[5].length ^= 1;
  for (const MessageHeader& h : headers) CHECK(auth.verify(payload, h, mac).code() == ErrorCode::unauthenticated);
  for (size_t at : {size_t(0), size_t(31)}) {
    Mac bad = mac;
    bad[at] ^= 1;
    CHECK(auth.verify(payload, kHeader, bad).code() == ErrorCode::unauthenticated);
  }
  CHECK(auth.verify(payload, kHeader, std::span(mac).first(16)).code() == ErrorCode::unauthenticated);
  auto other = MessageAuth::create(key_of(2)).value();
  CHECK(other.verify(payload, kHeader, mac).code() == ErrorCode::unauthenticated);
  CHECK(auth.verify({}, kHeader, auth.sign({}, kHeader).value()));  // an empty payload is a message too
}

TEST_CASE("keys come from the CSPRNG, fresh each time") {
  const MessageKey a = random_message_key().value(), b = random_message_key().value();
  CHECK(a != b);
  CHECK(a != MessageKey{});
}

TEST_CASE("the replay window takes each number once, out of order within its size, nothing older") {
  ReplayWindow w;
  CHECK_FALSE(w.fresh(0));
  CHECK(w.fresh(1));
  w.accept(1);
  CHECK_FALSE(w.fresh(1));
  w.accept(5);  // 2..4 still to come, in any order
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

TEST_CASE("a group opens what its ranks seal to each other, once, under the right rank, tag and session") {
  const GroupKey key = test::fixed_key(5, 77);
  auto r0 = GroupAuth::create(key, 0, 3).value();
  auto r1 = GroupAuth::create(key, 1, 3).value();
  const std::vector<uint8_t> q = random_bytes(1024, 1), a = random_bytes(64, 2);
  // Rank 0 sends q to ranks 1 and 2 (hashed once) and a to rank 1, in one batch.
  const GroupAuth::Send sends[] = {{1, 10, q}, {2, 10, q}, {1, 11, a}};
  const std::vector<Trailer> t = r0.seal(sends).value();
  REQUIRE(t.size() == 3);
  CHECK(t[0] != t[1]);  // one MAC per receiver

  // Out of order across tags is fine; each message opens once.
  CHECK(r1.open(0, 11, a, t[2]));
  CHECK(r1.open(0, 10, q, t[0]));
  const Status replay = r1.open(0, 10, q, t[0]);
  CHECK(replay.code() == ErrorCode::unauthenticated);
  CHECK(replay.message().find("replay") != std::string::npos);

  // Not rank 1's: rank 2's message, and messages under another tag, sender or session.
  auto r1b = GroupAuth::create(key, 1, 3).value();
  CHECK(r1b.open(0, 10, q, t[1]).code() == ErrorCode::unauthenticated);  // addressed to rank 2
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
  CHECK(r2.open(0, 10, q, t[1]));
  CHECK(r2.open(7, 10, q, t[1]).code() == ErrorCode::internal);  // no such rank: a caller's bug
}
