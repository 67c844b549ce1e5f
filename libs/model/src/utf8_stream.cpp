#include "starmesh/model/utf8_stream.hpp"

namespace starmesh {

// The length of the valid UTF-8 sequence at s[i] (1-4), 0 if it is invalid, or -1 if it is
// a valid beginning cut short by the end of s.
int utf8_sequence_at(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  if (c < 0x80) return 1;
  int len = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte (RFC 3629's table)
  if (c >= 0xC2 && c <= 0xDF)
    len = 2;
  else if (c == 0xE0)
    len = 3, lo = 0xA0;
  else if (c >= 0xE1 && c <= 0xEC)
    len = 3;
  else if (c == 0xED)
    len = 3, hi = 0x9F;  // no surrogates
  else if (c >= 0xEE && c <= 0xEF)
    len = 3;
  else if (c == 0xF0)
    len = 4, lo = 0x90;
  else if (c >= 0xF1 && c <= 0xF3)
    len = 4;
  else if (c == 0xF4)
    len = 4, hi = 0x8F;
  else
    return 0;
  for (int k = 1; k < len; ++k) {
    if (i + size_t(k) >= s.size()) return -1;
    const unsigned char b = byte(i + size_t(k));
    if (k == 1 ? (b < lo || b > hi) : (b & 0xC0) != 0x80) return 0;
  }
  return len;
}

namespace {

constexpr const char* kReplacement = "\xEF\xBF\xBD";  // U+FFFD

}  // namespace

std::string Utf8Stream::push(const std::string& bytes) {
  pending_ += bytes;
  std::string out;
  size_t i = 0;
  while (i < pending_.size()) {
    const int len = utf8_sequence_at(pending_, i);
    if (len < 0) break;  // may be completed by the next token: hold it back
    if (len == 0) {
      out += kReplacement;  // one replacement per invalid byte, as Python's errors="replace"
      ++i;
      continue;
    }
    out.append(pending_, i, size_t(len));
    i += size_t(len);
  }
  pending_.erase(0, i);
  return out;
}

std::string Utf8Stream::flush() {
  std::string out = pending_.empty() ? std::string() : std::string(kReplacement);  // a sequence left unfinished
  pending_.clear();
  return out;
}

}  // namespace starmesh
