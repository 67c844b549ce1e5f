#pragma once
// The BPE model of a byte-level tokenizer: the vocab (token strings in ByteLevel's alphabet)
// and the ranked merges, applied to one pre-token at a time as HF's BPE does (lowest rank
// first, leftmost first among equal ranks). Internal to the tokenizer (namespace detail).
#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "starmesh/core/expected.hpp"

namespace starmesh::detail {

// A string-keyed hash map that also answers string_view lookups without a copy.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  struct Options {
    bool ignore_merges = false;            // a pre-token found whole in the vocab is taken as is
    std::optional<std::string> unk_token;  // stands for a byte the vocab lacks (else dropped)
    bool fuse_unk = false;                 // consecutive unknowns give one unk
  };

  // `vocab` maps token -> id. Fails if the unk token is not in the vocab.
  static Expected<BpeModel> create(TokenMap vocab, Options options);

  // Adds the merge of rank = number of merges added before. Both parts and their
  // concatenation must be in the vocab; a later duplicate replaces the earlier rank (as HF).
  Status add_merge(std::string_view left, std::string_view right);
  void reserve_merges(size_t count) { merges_.reserve(count); }

  // Appends the ids of one pre-token given as raw bytes (before the ByteLevel mapping).
  void encode_word(std::string_view bytes, std::vector<int32_t>& out) const;

  const TokenMap& vocab() const { return vocab_; }
  std::optional<int32_t> find(std::string_view token) const;
  size_t merge_count() const { return merges_.size(); }

 private:
  struct Merge {
    int32_t rank;
    int32_t merged_id;
  };
  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  const Merge* find_merge(int32_t left, int32_t right) const;

  TokenMap vocab_;
  std::unordered_map<uint64_t, Merge> merges_;  // (left id, right id) -> rank, merged id
  std::array<int32_t, 256> byte_ids_{};         // id of each byte's ByteLevel character, or -1
  int32_t next_rank_ = 0;
  Options options_;
  std::optional<int32_t> unk_id_;
};

}  // namespace starmesh::detail
