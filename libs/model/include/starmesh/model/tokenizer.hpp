#pragma once
// The Hugging Face tokenizer.json byte-level BPE tokenizer (Llama 3 / 3.1, GPT-2 style),
// giving the same ids as HF tokenizers. Supported, and everything else refused at load:
//   model          BPE (merges as "a b" strings or ["a", "b"] pairs, ignore_merges, unk_token);
//                  no dropout, byte_fallback, continuing_subword_prefix, end_of_word_suffix
//   normalizer     null
//   pre_tokenizer  ByteLevel, or Sequence[Split(Regex|String, Isolated, invert false)...,
//                  ByteLevel] (ByteLevel last; its use_regex splits with the GPT-2 pattern)
//   decoder        ByteLevel
//   post_processor null, ByteLevel, TemplateProcessing, or a Sequence of those (gives BOS)
//   added_tokens   matched leftmost-longest in the raw text before pre-tokenization;
//                  lstrip, rstrip and single_word must be false
// Regexes run on PCRE2 (UTF + UCP), rewritten to match HF's Oniguruma: `\s` is Unicode
// White_Space (PCRE2's also takes U+180E), and \p{L} / \p{N} include Unicode 15-16's letters
// and digits (PCRE2 10.42 has Unicode 14). truncation and padding settings are ignored.
// A Tokenizer is cheap to copy (shared, immutable) and safe to use from many threads.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "starmesh/core/expected.hpp"

namespace starmesh {

// Token ids a tokenizer.json may use: the vocabulary is allocated up to its largest id, so a
// file cannot ask for more (Llama 3 uses 128,256).
inline constexpr int64_t kMaxVocabulary = int64_t(1) << 22;

class Tokenizer {
 public:
  static Expected<Tokenizer> load(const std::filesystem::path& tokenizer_json);
  // The same from the file's text; `origin` names it in errors.
  static Expected<Tokenizer> parse(std::string_view json_text, std::string_view origin);

  // Text -> ids. Added tokens (e.g. "<|eot_id|>") are matched in the raw text first, as HF
  // does; add_bos prepends the BOS named by the post_processor's TemplateProcessing, if any.
  std::vector<int32_t> encode(std::string_view text, bool add_bos = false) const;

  // Ids -> text, invalid UTF-8 replaced by U+FFFD as HF does. An id outside
  // [0, vocab_size) (or one no token has) is an error naming the id and the vocab size.
  Expected<std::string> decode(std::span<const int32_t> ids, bool skip_special = false) const;

  // The raw bytes one token stands for (streaming decoders hold back partial UTF-8 with it).
  Expected<std::string> token_bytes(int32_t id) const;

  int32_t vocab_size() const;  // max id + 1 over the model vocab and the added tokens
  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::optional<int32_t> bos_id() const;
  bool is_special(int32_t id) const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace starmesh
