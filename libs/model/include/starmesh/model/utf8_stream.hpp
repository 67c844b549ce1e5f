#pragma once
// Streams token bytes as text: holds back an incomplete UTF-8 sequence at the end until the
// next token completes it, so a multi-byte character split over two tokens prints whole.
#include <string>

namespace starmesh {

class Utf8Stream {
 public:
  // Appends bytes; returns the longest prefix that ends on a character boundary.
  std::string push(const std::string& bytes);
  // Whatever is held back (an invalid tail is returned as is).
  std::string flush();

 private:
  std::string pending_;
};

}  // namespace starmesh
