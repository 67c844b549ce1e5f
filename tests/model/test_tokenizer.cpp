#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "starmesh/model/tokenizer.hpp"

namespace fs = std::filesystem;
using starmesh::Tokenizer;

namespace {

const char* const kLlamaTokenizer = STARMESH_TESTDATA_DIR "/llama3_1/tokenizer.json";
const char* const kTinyTokenizer = STARMESH_GOLDEN_MODEL_DIR "/tokenizer.json";

std::string ids_text(const std::vector<int32_t>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
  return s + "]";
}

// Every golden string must give HF's ids and decode back to itself; each miss is reported.
void check_golden(const char* tokenizer_path, const char* golden_path) {
  auto tok = Tokenizer::load(tokenizer_path);
  REQUIRE_MESSAGE(tok.has_value(), (tok ? "" : tok.error().message));
  std::ifstream golden(golden_path);
  REQUIRE_MESSAGE(golden.good(), "cannot open ", golden_path);
  int total = 0, matched = 0, round_tripped = 0;
  std::string line;
  while (std::getline(golden, line)) {
    if (line.empty()) continue;
    const auto entry = nlohmann::json::parse(line);
    const auto text = entry.at("text").get<std::string>();
    const auto want = entry.at("ids").get<std::vector<int32_t>>();
    const std::vector<int32_t> got = tok->encode(text);
    ++total;
    if (got == want) {
      ++matched;
    } else {
      FAIL_CHECK("ids differ for " << nlohmann::json(text).dump() << "\n  got  " << ids_text(got) << "\n  want "
                                   << ids_text(want));
    }
    const auto back = tok->decode(got);
    if (back && *back == text) {
      ++round_tripped;
    } else {
      FAIL_CHECK("decode(encode(s)) != s for " << nlohmann::json(text).dump() << ": "
                                               << (back ? *back : back.error().message));
    }
  }
  MESSAGE(std::string(golden_path), ": ", matched, "/", total, " identical ids, ", round_tripped, "/", total,
          " round trips");
  CHECK(total >= 500);
  CHECK(matched == total);
  CHECK(round_tripped == total);
}

// A temporary file holding `text`, removed when the object goes.
struct TempFile {
  fs::path path;
  explicit TempFile(const std::string& text) {
    path = fs::temp_directory_path() / ("starmesh_tokenizer_" + std::to_string(::getpid()) + "_" +
                                        std::to_string(reinterpret_cast<uintptr_t>(this)) + ".json");
    std::ofstream(path) << text;
  }
  ~TempFile() { fs::remove(path); }
};

// The tiny tokenizer.json with one part of it replaced.
std::string tiny_with(const std::string& key, const nlohmann::json& value) {
  std::ifstream in(kTinyTokenizer);
  auto root = nlohmann::json::parse(in);
  root[key] = value;
  return root.dump();
}

std::string load_error(const std::string& json_text) {
  TempFile file(json_text);
  auto tok = Tokenizer::load(file.path);
  return tok ? std::string("(loaded)") : tok.error().message;
}

}  // namespace

TEST_CASE("tokenizer: Llama-3.1 tokenizer.json gives HF's ids on every golden string") {
  check_golden(kLlamaTokenizer, STARMESH_FIXTURES_DIR "/golden/tokenizer_llama3_1.jsonl");
}

TEST_CASE("tokenizer: the tiny model's tokenizer.json gives HF's ids on every golden string") {
  check_golden(kTinyTokenizer, STARMESH_FIXTURES_DIR "/golden/tokenizer_tiny.jsonl");
}

TEST_CASE("tokenizer: Llama-3.1 BOS, special tokens and vocab") {
  auto tok = Tokenizer::load(kLlamaTokenizer);
  REQUIRE_MESSAGE(tok.has_value(), (tok ? "" : tok.error().message));
  CHECK(tok->vocab_size() == 128256);
  REQUIRE(tok->bos_id().has_value());
  CHECK(*tok->bos_id() == 128000);
  const auto with_bos = tok->encode("Hello world", true);
  CHECK(with_bos == std::vector<int32_t>{128000, 9906, 1917});
  CHECK(tok->encode("Hello world", false) == std::vector<int32_t>{9906, 1917});
  CHECK(tok->encode("", true) == std::vector<int32_t>{128000});
  // ignore_merges: "talya" is a vocab token (112728) that its merges alone do not reach.
  CHECK(tok->encode("talya") == std::vector<int32_t>{112728});

  CHECK(tok->token_to_id("<|eot_id|>") == 128009);
  CHECK(tok->token_to_id("Hello") == 9906);
  CHECK_FALSE(tok->token_to_id("no such token here").has_value());
  CHECK(tok->is_special(128009));
  CHECK_FALSE(tok->is_special(9906));
  CHECK_FALSE(tok->is_special(-1));

  const std::vector<int32_t> chat{128000, 9906, 128009};
  CHECK(tok->decode(chat).value() == "<|begin_of_text|>Hello<|eot_id|>");
  CHECK(tok->decode(chat, true).value() == "Hello");
}

TEST_CASE("tokenizer: Llama-3.1 follows Oniguruma where PCRE2 reads the regex differently") {
  auto tok = Tokenizer::load(kLlamaTokenizer);
  REQUIRE_MESSAGE(tok.has_value(), (tok ? "" : tok.error().message));
  struct Case {
    const char* text;
    std::vector<int32_t> ids;  // from HF tokenizers 0.23.2 unless noted
  };
  const Case cases[] = {
      // U+180E is in PCRE2's \s, not in Oniguruma's (White_Space).
      {"\u0436\u180e've'T\x1d", {17394, 157, 254, 236, 6, 588, 17773, 217}},
      {"x\u180e\u180ey", {87, 157, 254, 236, 157, 254, 236, 88}},
      {"a \u180e b", {64, 87189, 254, 236, 293}},
      // Letters of Unicode 15/16, which PCRE2 10.42 (Unicode 14) leaves unassigned.
      {"'s\U00013460\U00013461's", {596, 172, 241, 239, 254, 172, 241, 239, 94, 596}},
      {"\U00010D4A't", {172, 238, 113, 232, 956}},
      {"\x0b\x1e\u01c5\U0001376A've   \u00b9 \n\"'s\u0661a",
       {199, 218, 131, 227, 172, 241, 251, 103, 3077, 256, 220, 60597, 720, 21230, 82, 109610, 64}},
      // A Unicode 16 digit (U+1CCF0) is its own \p{N} piece, so "'s" stays whole (596); the
      // digit's ids are HF's for it in "a\U0001CCF0..." (this line is derived, not run on HF).
      {"\U0001CCF0's", {172, 250, 111, 108, 596}},
      {"a\U0001CCF0\U0001CCF1\U0001CCF2\U0001CCF3",
       {64, 172, 250, 111, 108, 172, 250, 111, 109, 172, 250, 111, 110, 172, 250, 111, 111}},
      // (?i:...) folds case, long s and the Kelvin sign as Oniguruma does.
      {"x'S", {87, 13575}},
      {"'\u017f", {6, 129, 123}},
      {"x'\u212a", {87, 6, 15284, 103}},
      // Other Unicode spaces.
      {"a\u0085b", {64, 116360, 65}},
      {"a\u2028\u2028b", {64, 378, 101, 378, 101, 65}},
      {"a\u00a0\u00a0b", {64, 4194, 115648}},
      {"\u3000\u3000x", {23249, 23249, 87}},
      {" \u200b x", {30848, 865}},
  };
  for (const Case& c : cases) {
    const auto got = tok->encode(c.text);
    CHECK_MESSAGE(got == c.ids, nlohmann::json(c.text).dump(), ": got ", ids_text(got), ", want ", ids_text(c.ids));
  }
  CHECK(tok->encode("<|eot_id|>x", true) == std::vector<int32_t>{128000, 128009, 87});
}

TEST_CASE("tokenizer: token_bytes gives raw bytes, and decode repairs split UTF-8 as HF") {
  auto tok = Tokenizer::load(kLlamaTokenizer);
  REQUIRE_MESSAGE(tok.has_value(), (tok ? "" : tok.error().message));
  CHECK(tok->token_bytes(1917).value() == " world");
  CHECK(tok->token_bytes(128009).value() == "<|eot_id|>");
  // "👋" is several tokens; concatenating their raw bytes gives it back exactly.
  const auto ids = tok->encode("👋");
  REQUIRE(ids.size() > 1);
  std::string joined;
  for (const int32_t id : ids) joined += tok->token_bytes(id).value();
  CHECK(joined == "👋");
  // A broken sequence decodes to one U+FFFD per maximal invalid part, as HF's decode does.
  CHECK(tok->decode(std::vector<int32_t>{9468}).value() == "\uFFFD");
  CHECK(tok->decode(std::vector<int32_t>{9468, 239}).value() == "\uFFFD");
  CHECK(tok->decode(std::vector<int32_t>{220, 9468, 239, 233}).value() == " \U0001F44B");
}

TEST_CASE("tokenizer: an id outside the vocab is an error naming it and the vocab size") {
  auto tok = Tokenizer::load(kTinyTokenizer);
  REQUIRE_MESSAGE(tok.has_value(), (tok ? "" : tok.error().message));
  CHECK(tok->vocab_size() == 2048);
  CHECK(tok->bos_id() == 2043);
  CHECK(tok->encode("a", true).front() == 2043);
  for (const int32_t bad : {2048, -1, 1 << 30}) {
    const auto text = tok->decode(std::vector<int32_t>{5, bad, 6});
    REQUIRE_FALSE(text.has_value());
    CHECK(text.error().message.find(std::to_string(bad)) != std::string::npos);
    CHECK(text.error().message.find("2048") != std::string::npos);
    CHECK_FALSE(tok->token_bytes(bad).has_value());
  }
}

TEST_CASE("tokenizer: a missing file is an error naming the path") {
  const std::string path = "/nonexistent/dir/tokenizer.json";
  auto tok = Tokenizer::load(path);
  REQUIRE_FALSE(tok.has_value());
  CHECK(tok.error().message.find(path) != std::string::npos);
}

TEST_CASE("tokenizer: unsupported tokenizer.json parts are refused, naming them") {
  const std::string wordpiece =
      R"({"version": "1.0", "added_tokens": [], "normalizer": null,
          "pre_tokenizer": {"type": "Whitespace"}, "decoder": {"type": "WordPiece"},
          "model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {"[UNK]": 0, "a": 1}}})";
  const std::string error = load_error(wordpiece);
  CHECK_MESSAGE(error.find("WordPiece") != std::string::npos, error);
  CHECK(error.find("model type") != std::string::npos);

  CHECK(load_error(tiny_with("normalizer", {{"type", "NFC"}})).find("NFC") != std::string::npos);
  CHECK(load_error(tiny_with("pre_tokenizer", {{"type", "Metaspace"}})).find("Metaspace") != std::string::npos);
  CHECK(load_error(tiny_with("decoder", {{"type", "Metaspace"}})).find("Metaspace") != std::string::npos);
  CHECK(load_error(tiny_with("post_processor", {{"type", "RobertaProcessing"}})).find("RobertaProcessing") !=
        std::string::npos);
  CHECK(load_error("{ not json").find("not a valid tokenizer.json") != std::string::npos);
  // The tiny tokenizer itself loads through the same path.
  CHECK(load_error(tiny_with("version", "1.0")) == "(loaded)");
}

TEST_CASE("tokenizer: ids that would make the vocabulary huge are refused before anything is allocated") {
  std::ifstream in(kTinyTokenizer);
  auto root = nlohmann::json::parse(in);
  auto added = root;
  added["added_tokens"].push_back({{"id", 1000000000}, {"content", "<|huge|>"}, {"special", true}});
  const std::string added_error = load_error(added.dump());
  CHECK_MESSAGE(added_error.find("has id 1000000000, outside [0, 4194304)") != std::string::npos, added_error);
  auto vocab = root;
  vocab["model"]["vocab"]["zz-huge"] = 1000000000;
  const std::string vocab_error = load_error(vocab.dump());
  CHECK_MESSAGE(vocab_error.find("'zz-huge' has id 1000000000") != std::string::npos, vocab_error);
}

TEST_CASE("tokenizer: a plain ByteLevel pre-tokenizer splits with the GPT-2 regex") {
  // The tiny tokenizer's vocab and merges under GPT-2's split instead of Llama 3's.
  auto gpt2 = nlohmann::json::parse(tiny_with("version", "1.0"));
  gpt2["pre_tokenizer"] = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  TempFile file(gpt2.dump());
  auto byte_level = Tokenizer::load(file.path);
  REQUIRE_MESSAGE(byte_level.has_value(), (byte_level ? "" : byte_level.error().message));
  auto llama = Tokenizer::load(kTinyTokenizer);
  REQUIRE(llama.has_value());
  for (const std::string text : {"Hello world", "  two  spaces", "it's", "a, b."}) {
    CHECK_MESSAGE(byte_level->encode(text) == llama->encode(text), text);
    CHECK(byte_level->decode(byte_level->encode(text)).value() == text);
  }
  // Llama 3 keeps "\n\n" whole ("ĊĊ" = 295); GPT-2's \s+(?!\S) leaves the last "\n" apart.
  CHECK(llama->encode("a\n\nb") == std::vector<int32_t>{64, 295, 65});
  CHECK(byte_level->encode("a\n\nb") == std::vector<int32_t>{64, 198, 198, 65});

  // add_prefix_space puts a space before each piece that lacks one: "def" -> "Ġdef" (343).
  gpt2["pre_tokenizer"]["add_prefix_space"] = true;
  TempFile prefixed_file(gpt2.dump());
  auto prefixed = Tokenizer::load(prefixed_file.path);
  REQUIRE(prefixed.has_value());
  CHECK(llama->encode("def") == std::vector<int32_t>{320});
  CHECK(prefixed->encode("def") == std::vector<int32_t>{343});
  CHECK(prefixed->encode(" def") == std::vector<int32_t>{343});
}
