#include "starmesh/model/jinja_text.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "starmesh/model/utf8_stream.hpp"

namespace starmesh::jinja {
namespace {

// The byte length of the valid UTF-8 sequence at s[i], or 0 if it is not one (RFC 3629; a
// sequence cut short by the end is not one).
size_t sequence_length(std::string_view s, size_t i) { return size_t(std::max(utf8_sequence_at(s, i), 0)); }

bool contains_code_point(std::string_view set, char32_t cp) {
  for (size_t i = 0, len = 0; i < set.size(); i += len)
    if (decode_at(set, i, len) == cp) return true;
  return false;
}

// Python's str.isprintable() is false for these (Cc, Zs but space, Zl, Zp, the common Cf, and
// private use); repr() escapes them. Unassigned code points, which Python escapes too, pass.
bool py_unprintable(char32_t cp) {
  if (cp < 0x20 || (cp >= 0x7F && cp <= 0xA0) || cp == 0xAD) return true;
  if (cp < 0x600) return false;
  return (cp >= 0x600 && cp <= 0x605) || cp == 0x61C || cp == 0x6DD || cp == 0x70F || cp == 0x1680 || cp == 0x180E ||
         (cp >= 0x2000 && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202F) || (cp >= 0x205F && cp <= 0x2064) ||
         (cp >= 0x2066 && cp <= 0x206F) || cp == 0x3000 || (cp >= 0xE000 && cp <= 0xF8FF) || cp == 0xFEFF ||
         (cp >= 0xFFF9 && cp <= 0xFFFB) || cp >= 0xF0000;
}

void append_hex(std::string& out, const char* prefix, unsigned value, int digits) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%s%0*x", prefix, digits, value);
  out += buf;
}

}  // namespace

bool is_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t len = sequence_length(s, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

char32_t decode_at(std::string_view s, size_t i, size_t& len) {
  const auto b = [&](size_t k) { return char32_t(static_cast<unsigned char>(s[i + k])); };
  const char32_t c = b(0);
  if (c < 0x80) return len = 1, c;
  if (c < 0xE0) return len = 2, ((c & 0x1F) << 6) | (b(1) & 0x3F);
  if (c < 0xF0) return len = 3, ((c & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
  return len = 4, ((c & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

std::vector<size_t> code_point_offsets(std::string_view s) {
  std::vector<size_t> offsets;
  offsets.reserve(s.size() + 1);
  for (size_t i = 0, len = 0; i < s.size(); i += len) {
    offsets.push_back(i);
    decode_at(s, i, len);
  }
  offsets.push_back(s.size());
  return offsets;
}

size_t code_point_count(std::string_view s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

bool is_py_space(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

std::string_view py_strip(std::string_view s, bool left, bool right, const std::string* chars) {
  const auto strips = [&](char32_t cp) { return chars ? contains_code_point(*chars, cp) : is_py_space(cp); };
  size_t begin = 0, end = s.size();
  if (left) {
    for (size_t len = 0; begin < end && strips(decode_at(s, begin, len));) begin += len;
  }
  if (right) {
    while (end > begin) {
      size_t start = end - 1;
      while (start > begin && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
      size_t len = 0;
      if (!strips(decode_at(s, start, len))) break;
      end = start;
    }
  }
  return s.substr(begin, end - begin);
}

std::string ascii_upper(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'a' && c <= 'z') c = char(c - 'a' + 'A');
  return out;
}

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return out;
}

std::string py_float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  // Shortest round-trip digits and the decimal exponent, then Python's layout: positional
  // when -4 <= exponent < 16, else d.ddde+XX.
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  const std::string_view sci(buf, size_t(res.ptr - buf));
  const size_t e = sci.find('e');
  std::string digits;
  bool negative = false;
  for (char c : sci.substr(0, e)) {
    if (c == '-')
      negative = true;
    else if (c != '.')
      digits += c;
  }
  int exponent = 0;
  std::from_chars(sci.data() + e + 1 + (sci[e + 1] == '+'), sci.data() + sci.size(), exponent);
  std::string out = negative ? "-" : "";
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) {
      out += "0." + std::string(size_t(-exponent - 1), '0') + digits;
    } else if (size_t(exponent) + 1 >= digits.size()) {
      out += digits + std::string(size_t(exponent) + 1 - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, size_t(exponent) + 1) + "." + digits.substr(size_t(exponent) + 1);
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  char exp_buf[16];
  std::snprintf(exp_buf, sizeof exp_buf, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
  return out + exp_buf;
}

std::string py_string_repr(std::string_view s) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (size_t i = 0, len = 0; i < s.size(); i += len) {
    const char32_t cp = decode_at(s, i, len);
    if (cp == char32_t(quote) || cp == '\\') {
      out += '\\';
      out += char(cp);
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (py_unprintable(cp)) {
      if (cp <= 0xFF)
        append_hex(out, "\\x", unsigned(cp), 2);
      else if (cp <= 0xFFFF)
        append_hex(out, "\\u", unsigned(cp), 4);
      else
        append_hex(out, "\\U", unsigned(cp), 8);
    } else {
      out.append(s.substr(i, len));
    }
  }
  out += quote;
  return out;
}

void append_json_string(std::string& out, std::string_view s, bool ensure_ascii) {
  for (size_t i = 0, len = 0; i < s.size(); i += len) {
    const char32_t cp = decode_at(s, i, len);
    switch (cp) {
      case '"':
        out += "\\\"";
        continue;
      case '\\':
        out += "\\\\";
        continue;
      case '\n':
        out += "\\n";
        continue;
      case '\r':
        out += "\\r";
        continue;
      case '\t':
        out += "\\t";
        continue;
      case '\b':
        out += "\\b";
        continue;
      case '\f':
        out += "\\f";
        continue;
      default:
        break;
    }
    if (cp < 0x20) {
      append_hex(out, "\\u", unsigned(cp), 4);
    } else if (ensure_ascii && cp > 0x7E) {
      if (cp <= 0xFFFF) {
        append_hex(out, "\\u", unsigned(cp), 4);
      } else {  // a surrogate pair, as Python writes it
        const char32_t v = cp - 0x10000;
        append_hex(out, "\\u", unsigned(0xD800 + (v >> 10)), 4);
        append_hex(out, "\\u", unsigned(0xDC00 + (v & 0x3FF)), 4);
      }
    } else {
      out.append(s.substr(i, len));
    }
  }
}

}  // namespace starmesh::jinja
