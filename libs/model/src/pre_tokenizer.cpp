#include "starmesh/model/pre_tokenizer.hpp"

#include <array>
#include <memory>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

namespace starmesh::detail {

struct RegexSplitter::Code {
  pcre2_code* code = nullptr;
  ~Code() { pcre2_code_free(code); }
};

namespace {

// Length of the UTF-8 sequence a lead byte announces (1 for anything that is not a lead).
size_t utf8_lead_length(unsigned char c) {
  if (c >= 0xF0 && c <= 0xF4) return 4;
  if (c >= 0xE0) return c <= 0xEF ? 3 : 1;
  if (c >= 0xC2) return 2;
  return 1;
}

}  // namespace

namespace {

// Code points that HF tokenizers 0.23's Oniguruma (Unicode 16) counts as \p{L} / \p{N} and
// PCRE2 10.42 (Unicode 14) does not: the letters and digits added by Unicode 15 and 16.
// Measured by classifying every code point with both engines; none differ the other way,
// and \s (as White_Space) agrees everywhere.
constexpr std::string_view kLettersAfterUnicode14 =
    R"(\x{1C89}-\x{1C8A}\x{A7CB}-\x{A7CD}\x{A7DA}-\x{A7DC}\x{105C0}-\x{105F3})"
    R"(\x{10D4A}-\x{10D65}\x{10D6F}-\x{10D85}\x{10EC2}-\x{10EC4}\x{1123F}-\x{11240})"
    R"(\x{11380}-\x{11389}\x{1138B}\x{1138E}\x{11390}-\x{113B5}\x{113B7}\x{113D1})"
    R"(\x{113D3}\x{11BC0}-\x{11BE0}\x{11F02}\x{11F04}-\x{11F10}\x{11F12}-\x{11F33})"
    R"(\x{1342F}\x{13441}-\x{13446}\x{13460}-\x{143FA}\x{16100}-\x{1611D})"
    R"(\x{16D40}-\x{16D6C}\x{18CFF}\x{1B132}\x{1B155}\x{1DF25}-\x{1DF2A})"
    R"(\x{1E030}-\x{1E06D}\x{1E4D0}-\x{1E4EB}\x{1E5D0}-\x{1E5ED}\x{1E5F0}\x{2B739})"
    R"(\x{2EBF0}-\x{2EE5D}\x{31350}-\x{323AF})";
constexpr std::string_view kNumbersAfterUnicode14 =
    R"(\x{10D40}-\x{10D49}\x{116D0}-\x{116E3}\x{11BF0}-\x{11BF9}\x{11F50}-\x{11F59})"
    R"(\x{16130}-\x{16139}\x{16D70}-\x{16D79}\x{1CCF0}-\x{1CCF9}\x{1D2C0}-\x{1D2D3})"
    R"(\x{1E4F0}-\x{1E4F9}\x{1E5F1}-\x{1E5FA})";

Error unsupported(std::string_view what, std::string_view pattern) {
  return make_error("tokenizer regex: ", what,
                    " is not supported (Oniguruma, which HF uses, "
                    "and PCRE2 read it differently); pattern: ",
                    pattern);
}

}  // namespace

Expected<std::string> oniguruma_to_pcre2(std::string_view pattern) {
  std::string out;
  out.reserve(pattern.size() + 64);
  bool in_class = false;
  const size_t n = pattern.size();
  for (size_t i = 0; i < n; ++i) {
    const char c = pattern[i];
    if (c == '[') {
      if (!in_class) {  // open a class; a ']' right after '[' or '[^' is a literal
        in_class = true;
        out += c;
        if (i + 1 < n && pattern[i + 1] == '^') out += pattern[++i];
        if (i + 1 < n && pattern[i + 1] == ']') out += pattern[++i];
      } else if (i + 1 < n && pattern[i + 1] == ':') {  // POSIX [:name:] inside a class
        const size_t end = pattern.find(":]", i + 2);
        if (end == std::string_view::npos) return unsupported("an unclosed [:", pattern);
        out.append(pattern.substr(i, end + 2 - i));
        i = end + 1;
      } else {
        return unsupported("a nested character class", pattern);
      }
      continue;
    }
    if (in_class && c == ']') in_class = false;
    if (in_class && c == '&' && i + 1 < n && pattern[i + 1] == '&') {
      return unsupported("class intersection &&", pattern);
    }
    if (c != '\\' || i + 1 == n) {
      out += c;
      continue;
    }
    const char d = pattern[++i];
    switch (d) {
      // Oniguruma's \s is exactly White_Space; PCRE2's (with UCP) also takes U+180E.
      case 's':
        out += "\\p{White_Space}";
        break;
      case 'S':
        out += "\\P{White_Space}";
        break;
      // \w and \b follow different word definitions in the two engines; \h is a hex digit
      // in Oniguruma and horizontal space in PCRE2.
      case 'w':
      case 'W':
      case 'b':
      case 'B':
      case 'h':
      case 'H':
        return unsupported(std::string("the escape \\") + d, pattern);
      case 'p':
      case 'P': {  // \p{L}, \pL, \P{N}, \p{^N}...: L and N get Unicode 16's additions
        size_t name_end = i + 1;
        std::string_view name;
        if (i + 1 < n && pattern[i + 1] == '{') {
          name_end = pattern.find('}', i + 2);
          if (name_end == std::string_view::npos) return unsupported("an unclosed \\p{", pattern);
          name = pattern.substr(i + 2, name_end - (i + 2));
        } else if (i + 1 < n) {
          name = pattern.substr(i + 1, 1);
        }
        bool negated = d == 'P';
        if (!name.empty() && name.front() == '^') {
          negated = !negated;
          name.remove_prefix(1);
        }
        if (name != "L" && name != "N") {
          out.append(pattern.substr(i - 1, name_end + 1 - (i - 1)));  // as written
        } else {
          const std::string set = std::string("\\p{") + std::string(name) + "}" +
                                  std::string(name == "L" ? kLettersAfterUnicode14 : kNumbersAfterUnicode14);
          if (in_class && negated) {
            return unsupported(std::string("\\P{") + std::string(name) + "} inside a class", pattern);
          }
          out += in_class ? set : (negated ? "[^" : "[") + set + "]";
        }
        i = name_end;
        break;
      }
      case 'Q': {  // \Q...\E quotes literally: copy through unchanged
        const size_t end = pattern.find("\\E", i + 1);
        const size_t stop = end == std::string_view::npos ? n : end + 2;
        out += "\\Q";
        out.append(pattern.substr(i + 1, stop - (i + 1)));
        i = stop - 1;
        break;
      }
      default:
        out += '\\';
        out += d;
        break;
    }
  }
  return out;
}

Expected<RegexSplitter> RegexSplitter::compile_regex(std::string_view pattern) {
  SM_ASSIGN(pcre, oniguruma_to_pcre2(pattern));
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  // MULTILINE: ^ and $ are line anchors in Oniguruma's Ruby syntax. MATCH_INVALID_UTF: input
  // that is not UTF-8 is still split (invalid bytes land in the gaps) instead of failing.
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pcre.data()), pcre.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE | PCRE2_MATCH_INVALID_UTF, &error_code,
                                   &error_offset, nullptr);
  if (code == nullptr) {
    std::array<PCRE2_UCHAR, 256> buffer{};
    pcre2_get_error_message(error_code, buffer.data(), buffer.size());
    return make_error("tokenizer regex does not compile (", reinterpret_cast<char*>(buffer.data()), " at offset ",
                      error_offset, "): ", pattern);
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // best effort: the interpreter also works
  auto owned = std::make_shared<Code>();
  owned->code = code;
  RegexSplitter splitter;
  splitter.code_ = std::move(owned);
  return splitter;
}

RegexSplitter RegexSplitter::literal(std::string_view text) {
  RegexSplitter splitter;
  splitter.literal_ = std::string(text);
  return splitter;
}

void RegexSplitter::split(std::string_view text, std::vector<std::string_view>& out) const {
  if (text.empty()) return;
  size_t last = 0;  // end of the previous match
  auto emit = [&](size_t start, size_t end) {
    if (start > last) out.push_back(text.substr(last, start - last));
    out.push_back(text.substr(start, end - start));
    last = end;
  };
  if (!code_) {
    if (!literal_.empty()) {
      for (size_t at = text.find(literal_); at != std::string_view::npos; at = text.find(literal_, last)) {
        emit(at, at + literal_.size());
      }
    }
  } else {
    std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> data(
        pcre2_match_data_create_from_pattern(code_->code, nullptr), &pcre2_match_data_free);
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    size_t offset = 0;
    while (offset < text.size()) {
      int rc = pcre2_match(code_->code, subject, text.size(), offset, 0, data.get(), nullptr);
      if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
        // JIT stack exhausted (pathological input): the interpreter keeps its frames on the heap.
        rc = pcre2_match(code_->code, subject, text.size(), offset, PCRE2_NO_JIT, data.get(), nullptr);
      }
      if (rc < 0) break;  // no further match: the rest is one gap
      const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data.get());
      const size_t start = ovector[0], end = ovector[1];
      if (end == start) {  // an empty match splits nothing; step over one character
        offset = start + utf8_lead_length(static_cast<unsigned char>(text[start]));
        continue;
      }
      emit(start, end);
      offset = end;
    }
  }
  if (last < text.size()) out.push_back(text.substr(last));
}

namespace {

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes
// take code points 256, 257, ... in byte order.
struct ByteAlphabet {
  std::array<std::string, 256> utf8;        // byte -> UTF-8 of its character
  std::array<int16_t, 256 + 68> byte_of{};  // code point -> byte, -1 outside the alphabet

  ByteAlphabet() {
    byte_of.fill(-1);
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const int cp = printable ? b : next++;
      byte_of[cp] = static_cast<int16_t>(b);
      std::string& s = utf8[b];
      if (cp < 0x80) {
        s += static_cast<char>(cp);
      } else {  // all code points are < 0x800: two bytes
        s += static_cast<char>(0xC0 | (cp >> 6));
        s += static_cast<char>(0x80 | (cp & 0x3F));
      }
    }
  }
};

const ByteAlphabet& alphabet() {
  static const ByteAlphabet table;  // a constant, built on first use
  return table;
}

}  // namespace

std::string_view byte_to_unicode(uint8_t b) { return alphabet().utf8[b]; }

std::optional<std::string> unicode_to_bytes(std::string_view token) {
  const ByteAlphabet& table = alphabet();
  std::string bytes;
  bytes.reserve(token.size());
  for (size_t i = 0; i < token.size();) {
    const auto c = static_cast<unsigned char>(token[i]);
    uint32_t cp = 0;
    if (c < 0x80) {
      cp = c;
      i += 1;
    } else if ((c & 0xE0) == 0xC0 && i + 1 < token.size()) {
      cp = ((c & 0x1Fu) << 6) | (static_cast<unsigned char>(token[i + 1]) & 0x3Fu);
      i += 2;
    } else {
      return std::nullopt;  // three- and four-byte characters are all outside the alphabet
    }
    if (cp >= table.byte_of.size() || table.byte_of[cp] < 0) return std::nullopt;
    bytes += static_cast<char>(table.byte_of[cp]);
  }
  return bytes;
}

std::string utf8_lossy(std::string_view bytes) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
  std::string out;
  out.reserve(bytes.size());
  const size_t n = bytes.size();
  auto at = [&](size_t k) { return static_cast<unsigned char>(bytes[k]); };
  for (size_t i = 0; i < n;) {
    const unsigned char c = at(i);
    size_t need = 0;                     // continuation bytes expected
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the first continuation byte
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      out += kReplacement;
      ++i;
      continue;
    }
    size_t k = 1;  // bytes of this sequence seen valid so far
    for (; k <= need && i + k < n; ++k) {
      const unsigned char b = at(i + k);
      const unsigned char first_lo = k == 1 ? lo : 0x80, first_hi = k == 1 ? hi : 0xBF;
      if (b < first_lo || b > first_hi) break;
    }
    if (k == need + 1) {
      out.append(bytes.substr(i, k));
    } else {
      out += kReplacement;  // the maximal valid prefix counts as one error
    }
    i += k;
  }
  return out;
}

}  // namespace starmesh::detail
