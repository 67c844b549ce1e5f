#pragma once
// Streams token bytes as text, always valid UTF-8: holds back an incomplete sequence at the
// end until the next token completes it, so a multi-byte character split over two tokens
// prints whole; bytes that cannot be UTF-8 become U+FFFD (one per byte).
#include <string>
#include <string_view>

namespace starmesh {

// The length of the valid UTF-8 sequence at s[i] (1-4; RFC 3629: no overlongs, no surrogates),
// 0 if it is invalid, or -1 if it is a valid beginning cut short by the end of s.
int utf8_sequence_at(std::string_view s, size_t i);

class Utf8Stream {
 public:
  // Appends bytes; returns the text up to the last complete character.
  std::string push(const std::string& bytes);
  // The end of the stream: a sequence still unfinished becomes one U+FFFD.
  std::string flush();

 private:
  std::string pending_;
};

}  // namespace starmesh
