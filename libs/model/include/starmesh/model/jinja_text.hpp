#pragma once
// Text with Python's meaning, on UTF-8 bytes. Jinja (and so every HF chat template) works on
// Python str: len, indexing and slicing count code points, strip() takes Unicode whitespace,
// str()/repr() of numbers and strings have Python's exact spelling. These helpers give the
// same answers on UTF-8; every input must be valid UTF-8 (checked at the edges).
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace starmesh::jinja {

bool is_valid_utf8(std::string_view s);

// The code point that starts at s[i] (s valid UTF-8); `len` receives its byte length.
char32_t decode_at(std::string_view s, size_t i, size_t& len);
void append_utf8(std::string& out, char32_t cp);

// Byte offsets of each code point of s, plus s.size() at the end (so size() - 1 code points).
std::vector<size_t> code_point_offsets(std::string_view s);
size_t code_point_count(std::string_view s);

// Python's str.isspace() for one code point (what str.strip() and the regex \s take).
bool is_py_space(char32_t cp);

// str.strip() / lstrip() / rstrip(): whitespace when `chars` is null, else any of its code points.
std::string_view py_strip(std::string_view s, bool left, bool right, const std::string* chars = nullptr);

// str.upper() / str.lower() for ASCII letters; other code points pass unchanged (a documented
// gap: Python maps all of Unicode; the templates we serve only case-map ASCII, if anything).
std::string ascii_upper(std::string_view s);
std::string ascii_lower(std::string_view s);

// repr(float): the shortest digits that read back the same, "1.0", "1e+16", "1e-05", "inf".
std::string py_float_repr(double d);
// repr(str): quoted with ' (or " when only ' occurs), non-printable characters escaped.
std::string py_string_repr(std::string_view s);
// The inside of a JSON string as Python's json.dumps writes it (no quotes added).
void append_json_string(std::string& out, std::string_view s, bool ensure_ascii);

}  // namespace starmesh::jinja
