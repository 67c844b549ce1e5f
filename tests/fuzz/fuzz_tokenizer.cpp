// libFuzzer target: tokenizer.json text from a hostile file, then encoding and decoding with
// whatever loaded. The first byte picks the mode: even, the input is a tokenizer.json; odd,
// the rest is text for the real Llama-3.1 tokenizer (encode, decode, stream the ids back, and the input's bytes read as
// ids).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "starmesh/model/tokenizer.hpp"
#include "starmesh/model/utf8_stream.hpp"

namespace {

const starmesh::Tokenizer& llama3() {
  static const starmesh::Tokenizer tok =
      starmesh::Tokenizer::load(STARMESH_TESTDATA_DIR "/llama3_1/tokenizer.json").value();
  return tok;
}

void round_trip(const starmesh::Tokenizer& tok, std::string_view text) {
  const std::vector<int32_t> ids = tok.encode(text, /*add_bos=*/true);
  (void)tok.decode(ids);
  (void)tok.decode(ids, /*skip_special=*/true);
  starmesh::Utf8Stream stream;  // what the API streams: each token's bytes, UTF-8 completed
  for (int32_t id : ids)
    if (auto bytes = tok.token_bytes(id)) (void)stream.push(*bytes);
  (void)stream.flush();
}

}  // namespace

// The 9 MB tokenizer.json loads once, before any input is timed (a lazy load in the first
// odd input was reported as a 10 s timeout of that input).
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)llama3();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 1) {
    round_trip(llama3(), rest);
    // Ids the input names directly: out-of-range ones must be errors, never reads.
    std::vector<int32_t> ids(rest.size() / 4);
    std::memcpy(ids.data(), rest.data(), ids.size() * 4);
    (void)llama3().decode(ids);
    return 0;
  }
  auto tok = starmesh::Tokenizer::parse(rest, "fuzz input");
  if (!tok) return 0;
  round_trip(*tok, "Hello, world! 12345 <|eot_id|> \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 \xff");
  (void)tok->vocab_size();
  (void)tok->bos_id();
  return 0;
}
