#pragma once
// The text side of the byte-level BPE tokenizer: the regex Split pre-tokenizer (PCRE2,
// made to behave as HF's Oniguruma does), the ByteLevel byte <-> unicode alphabet, and the
// lossy UTF-8 repair HF's decoder applies. Internal to the tokenizer (namespace detail).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "starmesh/core/expected.hpp"

namespace starmesh::detail {

// The GPT-2 pattern HF's ByteLevel pre-tokenizer splits with when use_regex is true.
inline constexpr std::string_view kGpt2SplitPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Splits text into the pieces HF's Split pre-tokenizer gives with behavior Isolated and
// invert false: every match, and every non-empty stretch between matches, in order.
class RegexSplitter {
 public:
  // A regex in Oniguruma syntax (as tokenizer.json holds it), rewritten for PCRE2 by
  // oniguruma_to_pcre2.
  static Expected<RegexSplitter> compile_regex(std::string_view pattern);
  // An exact string (tokenizer.json's {"String": ...} pattern).
  static RegexSplitter literal(std::string_view text);

  // Appends the pieces of `text` to `out`. Pieces view `text`.
  void split(std::string_view text, std::vector<std::string_view>& out) const;

  struct Code;  // the compiled PCRE2 pattern

 private:
  std::shared_ptr<const Code> code_;  // null for a literal
  std::string literal_;
};

// Rewrites an Oniguruma pattern so PCRE2 matches what HF's Oniguruma matches: `\s` / `\S`
// become Unicode White_Space (PCRE2's `\s` also takes U+180E); \p{L} and \p{N} gain the
// letters and digits of Unicode 15-16 (PCRE2 10.42 knows Unicode 14). Constructs the two
// engines read differently (`\w \W \b \B \h \H`, nested classes, `&&`, \P{L} inside a
// class) are refused with an error naming them.
Expected<std::string> oniguruma_to_pcre2(std::string_view pattern);

// ByteLevel's alphabet: the UTF-8 of the printable character that stands for byte `b`.
std::string_view byte_to_unicode(uint8_t b);

// ByteLevel's decoder for one token: the bytes its characters stand for, or nullopt when
// some character is outside the alphabet (HF then keeps the token's own UTF-8).
std::optional<std::string> unicode_to_bytes(std::string_view token);

// `bytes` with each invalid UTF-8 sequence (maximal subpart) replaced by U+FFFD, as Rust's
// String::from_utf8_lossy does.
std::string utf8_lossy(std::string_view bytes);

}  // namespace starmesh::detail
