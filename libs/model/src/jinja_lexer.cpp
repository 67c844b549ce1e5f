#include "starmesh/model/jinja_lexer.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "starmesh/model/jinja_text.hpp"

namespace starmesh::jinja {
namespace {

constexpr size_t npos = std::string_view::npos;

template <class... Parts>
Error syntax_error(int line, Parts&&... parts) {
  return make_error(ErrorCode::invalid_argument, "chat template line ", line, ": ", std::forward<Parts>(parts)...);
}

bool is_dec(char c) { return c >= '0' && c <= '9'; }
bool is_zero(char c) { return c == '0'; }
bool is_bin(char c) { return c == '0' || c == '1'; }
bool is_oct(char c) { return c >= '0' && c <= '7'; }
bool is_hex(char c) { return is_dec(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || is_dec(c); }

// jinja2's `(\d+_)*\d+` (digits with single underscores between) at s[i]: its end, or npos.
size_t match_digits(std::string_view s, size_t i, bool (*digit)(char)) {
  if (i >= s.size() || !digit(s[i])) return npos;
  size_t j = i + 1;
  while (j < s.size()) {
    if (digit(s[j]))
      ++j;
    else if (s[j] == '_' && j + 1 < s.size() && digit(s[j + 1]))
      j += 2;
    else
      break;
  }
  return j;
}

// `e[+-]?digits` at s[i]: its end, or npos.
size_t match_exponent(std::string_view s, size_t i) {
  if (i >= s.size() || (s[i] != 'e' && s[i] != 'E')) return npos;
  ++i;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  return match_digits(s, i, is_dec);
}

// jinja2's float_re at s[i] (not right after a '.'): digits, then a fraction and/or an exponent.
size_t match_float(std::string_view s, size_t i) {
  if (i > 0 && s[i - 1] == '.') return npos;
  const size_t whole = match_digits(s, i, is_dec);
  if (whole == npos) return npos;
  size_t end = whole;
  if (end < s.size() && s[end] == '.') {
    const size_t fraction = match_digits(s, end + 1, is_dec);
    if (fraction != npos) end = fraction;
  }
  const size_t exponent = match_exponent(s, end);
  if (exponent != npos) return exponent;
  return end == whole ? npos : end;
}

// jinja2's integer_re at s[i]: 0b/0o/0x prefixed, [1-9](_?\d)*, or 0(_?0)*. Returns the end and
// the base.
size_t match_integer(std::string_view s, size_t i, int& base) {
  if (i >= s.size() || !is_dec(s[i])) return npos;
  if (s[i] == '0' && i + 1 < s.size()) {
    const char p = char(s[i + 1] | 0x20);
    bool (*digit)(char) = p == 'b' ? is_bin : p == 'o' ? is_oct : p == 'x' ? is_hex : nullptr;
    if (digit) {
      size_t j = i + 2;
      while (j < s.size()) {
        if (digit(s[j]))
          ++j;
        else if (s[j] == '_' && j + 1 < s.size() && digit(s[j + 1]))
          j += 2;
        else
          break;
      }
      if (j > i + 2) {
        base = p == 'b' ? 2 : p == 'o' ? 8 : 16;
        return j;
      }
    }
  }
  base = 10;
  return match_digits(s, i, s[i] == '0' ? is_zero : is_dec);
}

constexpr std::string_view kOperators[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[",
                                           "]",  "(",  ")",  "{",  "}",  ">",  "<", "=", ".", ":", "|", ",", ";"};

int count_newlines(std::string_view s) { return int(std::count(s.begin(), s.end(), '\n')); }

// Python's unicode-escape on a string literal's inside (after jinja2 turned non-ASCII
// characters into \x, \u or \U escapes, which is why a backslash before one keeps that spelling).
Expected<std::string> unescape(std::string_view s, int line) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i++];
      continue;
    }
    const char c = s[i + 1];
    i += 2;
    const auto hex_escape = [&](size_t digits) -> Status {
      uint32_t cp = 0;
      for (size_t k = 0; k < digits; ++k, ++i) {
        if (i >= s.size() || !is_hex(s[i]))
          return syntax_error(line, "truncated \\", std::string(1, c), " escape in a string literal");
        cp = cp * 16 + uint32_t(is_dec(s[i]) ? s[i] - '0' : (s[i] | 0x20) - 'a' + 10);
      }
      if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return syntax_error(line, "string literal escape \\", std::string(1, c), " gives no valid character");
      append_utf8(out, cp);
      return Status::ok();
    };
    switch (c) {
      case '\n':
        break;  // a backslash-newline continues the line
      case '\\':
      case '\'':
      case '"':
        out += c;
        break;
      case 'a':
        out += '\a';
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'v':
        out += '\v';
        break;
      case 'x':
        SM_TRY(hex_escape(2));
        break;
      case 'u':
        SM_TRY(hex_escape(4));
        break;
      case 'U':
        SM_TRY(hex_escape(8));
        break;
      case 'N':
        return syntax_error(line, "\\N{...} escapes in string literals are not supported");
      default:
        if (is_oct(c)) {
          uint32_t cp = uint32_t(c - '0');
          for (int k = 0; k < 2 && i < s.size() && is_oct(s[i]); ++k) cp = cp * 8 + uint32_t(s[i++] - '0');
          append_utf8(out, cp);
        } else if (static_cast<unsigned char>(c) >= 0x80) {
          size_t len = 0;
          const char32_t cp = decode_at(s, i - 1, len);
          i = i - 1 + len;
          char buf[16];
          std::snprintf(buf, sizeof buf, cp <= 0xFF ? "\\x%02x" : cp <= 0xFFFF ? "\\u%04x" : "\\U%08x", unsigned(cp));
          out += buf;
        } else {
          out += '\\';  // an unknown escape stays as written
          out += c;
        }
    }
  }
  return out;
}

class Lexer {
 public:
  Lexer(std::string source, const Limits& limits) : src_(std::move(source)), limits_(limits) {}

  Expected<std::vector<Token>> run() {
    while (pos_ < src_.size()) SM_TRY(root());
    push(TokenKind::end, "");
    return std::move(tokens_);
  }

 private:
  void push(TokenKind kind, std::string text) { tokens_.push_back(Token{kind, std::move(text), 0, 0, line_}); }

  // Advances over src_[pos_, end), counting lines.
  void advance_to(size_t end) {
    line_ += count_newlines(std::string_view(src_).substr(pos_, end - pos_));
    pos_ = end;
  }

  size_t skip_space(size_t i) const {
    std::string_view s(src_);
    for (size_t len = 0; i < s.size() && is_py_space(decode_at(s, i, len));) i += len;
    return i;
  }

  bool at(size_t i, std::string_view what) const { return std::string_view(src_).substr(i, what.size()) == what; }

  // Text up to the next tag, the whitespace control of that tag, then the tag.
  Status root() {
    size_t tag = pos_;
    while ((tag = src_.find('{', tag)) != npos) {
      if (tag + 1 < src_.size() && (src_[tag + 1] == '{' || src_[tag + 1] == '%' || src_[tag + 1] == '#')) break;
      ++tag;
    }
    if (tag == npos) {
      push(TokenKind::data, src_.substr(pos_));
      advance_to(src_.size());
      return Status::ok();
    }
    const char kind = src_[tag + 1];
    const size_t after = tag + 2;
    const char sign = after < src_.size() && (src_[after] == '-' || src_[after] == '+') ? src_[after] : 0;
    std::string_view text = std::string_view(src_).substr(pos_, tag - pos_);
    if (sign == '-') {
      text = py_strip(text, false, true);
    } else if (sign != '+' && kind != '{') {  // lstrip_blocks
      const size_t newline = text.rfind('\n');
      const size_t line_start = newline == npos ? 0 : newline + 1;
      const std::string_view tail = text.substr(line_start);
      if ((line_start > 0 || line_starting_) && !tail.empty() && py_strip(tail, true, true).empty())
        text = text.substr(0, line_start);
    }
    if (!text.empty()) push(TokenKind::data, std::string(text));
    advance_to(after + (sign ? 1 : 0));
    if (kind == '#') return comment();
    return tag_body(kind == '%');
  }

  Status comment() {
    const int opened = line_;
    for (size_t i = pos_; i + 1 < src_.size(); ++i) {
      size_t end = npos;
      if (at(i, "+#}")) {
        end = i + 3;
      } else if (at(i, "-#}")) {
        end = skip_space(i + 3);
      } else if (at(i, "#}")) {
        end = i + 2;
        if (end < src_.size() && src_[end] == '\n') ++end;  // trim_blocks
      }
      if (end != npos) {
        line_starting_ = src_[end - 1] == '\n';
        advance_to(end);
        return Status::ok();
      }
    }
    return syntax_error(opened, "missing end of comment tag");
  }

  // The tokens of a {{ }} or {% %} tag, through its end.
  Status tag_body(bool block) {
    const int opened = line_;
    push(block ? TokenKind::block_begin : TokenKind::variable_begin, block ? "{%" : "{{");
    std::string balance;  // the closing brackets owed, innermost last
    while (true) {
      if (pos_ >= src_.size())
        return syntax_error(opened, "unexpected end of template: the ", block ? "{%" : "{{", " tag is not closed");
      if (balance.empty()) {
        size_t end = npos;
        if (block && at(pos_, "+%}")) {
          end = pos_ + 3;
        } else if (at(pos_, block ? "-%}" : "-}}")) {
          end = skip_space(pos_ + 3);
        } else if (at(pos_, block ? "%}" : "}}")) {
          end = pos_ + 2;
          if (block && end < src_.size() && src_[end] == '\n') ++end;  // trim_blocks
        }
        if (end != npos) {
          push(block ? TokenKind::block_end : TokenKind::variable_end, block ? "%}" : "}}");
          line_starting_ = src_[end - 1] == '\n';
          advance_to(end);
          return Status::ok();
        }
      }
      SM_TRY(token(balance));
    }
  }

  Status token(std::string& balance) {
    const std::string_view s(src_);
    const size_t space_end = skip_space(pos_);
    if (space_end > pos_) {
      advance_to(space_end);
      return Status::ok();
    }
    if (size_t end = match_float(s, pos_); end != npos) {
      std::string digits;
      for (char c : s.substr(pos_, end - pos_))
        if (c != '_') digits += c;
      Token t{TokenKind::floating, digits, 0, 0, line_};
      const auto res = std::from_chars(digits.data(), digits.data() + digits.size(), t.float_value);
      if (res.ec == std::errc::result_out_of_range)  // Python reads 1e999 as inf and 1e-999 as 0.0
        t.float_value = digits.find("e-") != npos || digits.find("E-") != npos ? 0.0 : HUGE_VAL;
      tokens_.push_back(std::move(t));
      advance_to(end);
      return Status::ok();
    }
    int base = 10;
    if (size_t end = match_integer(s, pos_, base); end != npos) {
      std::string digits;
      for (char c : s.substr(pos_ + (base == 10 ? 0 : 2), end - pos_ - (base == 10 ? 0 : 2)))
        if (c != '_') digits += c;
      Token t{TokenKind::integer, std::string(s.substr(pos_, end - pos_)), 0, 0, line_};
      const auto res = std::from_chars(digits.data(), digits.data() + digits.size(), t.int_value, base);
      if (res.ec != std::errc()) return syntax_error(line_, "integer literal ", t.text, " does not fit in 64 bits");
      tokens_.push_back(std::move(t));
      advance_to(end);
      return Status::ok();
    }
    if (is_name_start(s[pos_])) {
      size_t end = pos_ + 1;
      while (end < s.size() && is_name_char(s[end])) ++end;
      push(TokenKind::name, std::string(s.substr(pos_, end - pos_)));
      advance_to(end);
      return Status::ok();
    }
    if (s[pos_] == '\'' || s[pos_] == '"') return string_literal();
    for (std::string_view op : kOperators) {
      if (!at(pos_, op)) continue;
      if (op == "(" || op == "[" || op == "{") {
        if (balance.size() >= size_t(limits_.max_depth))
          return syntax_error(line_, "brackets nest deeper than ", limits_.max_depth, " (the max_depth bound)");
        balance += op == "(" ? ')' : op == "[" ? ']' : '}';
      } else if (op == ")" || op == "]" || op == "}") {
        if (balance.empty()) return syntax_error(line_, "unexpected '", op, "'");
        if (balance.back() != op[0])
          return syntax_error(line_, "unexpected '", op, "', expected '", std::string(1, balance.back()), "'");
        balance.pop_back();
      }
      push(TokenKind::op, std::string(op));
      advance_to(pos_ + op.size());
      return Status::ok();
    }
    size_t len = 0;
    decode_at(s, pos_, len);
    return syntax_error(line_, "unexpected character '", s.substr(pos_, len), "'");
  }

  Status string_literal() {
    const char quote = src_[pos_];
    size_t i = pos_ + 1;
    while (i < src_.size() && src_[i] != quote) i += src_[i] == '\\' ? 2 : 1;
    if (i >= src_.size()) return syntax_error(line_, "unclosed string literal");
    auto value = unescape(std::string_view(src_).substr(pos_ + 1, i - pos_ - 1), line_);
    if (!value) return value.error();
    push(TokenKind::string, std::move(*value));
    advance_to(i + 1);
    return Status::ok();
  }

  std::string src_;
  const Limits& limits_;
  size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;  // the last tag ended a line (lstrip_blocks strips at line start)
  std::vector<Token> tokens_;
};

}  // namespace

Expected<std::vector<Token>> tokenize(std::string_view source, const Limits& limits) {
  if (source.size() > limits.max_source_bytes)
    return make_error(ErrorCode::invalid_argument, "chat template: the template has ", source.size(),
                      " bytes, more than ", limits.max_source_bytes, " (the max_source_bytes bound)");
  if (!is_valid_utf8(source))
    return make_error(ErrorCode::invalid_argument, "chat template: the template is not UTF-8");
  std::string normalized;
  normalized.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] != '\r') {
      normalized += source[i];
    } else {
      normalized += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    }
  }
  if (!normalized.empty() && normalized.back() == '\n') normalized.pop_back();  // keep_trailing_newline off
  return Lexer(std::move(normalized), limits).run();
}

}  // namespace starmesh::jinja
