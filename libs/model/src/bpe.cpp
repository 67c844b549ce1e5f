#include "starmesh/model/bpe.hpp"

#include <algorithm>

#include "starmesh/model/pre_tokenizer.hpp"

namespace starmesh::detail {

Expected<BpeModel> BpeModel::create(TokenMap vocab, Options options) {
  BpeModel model;
  model.vocab_ = std::move(vocab);
  model.options_ = std::move(options);
  if (model.options_.unk_token) {
    model.unk_id_ = model.find(*model.options_.unk_token);
    if (!model.unk_id_) {
      return make_error("tokenizer.json: the BPE unk_token '", *model.options_.unk_token, "' is not in the vocab");
    }
  }
  for (int b = 0; b < 256; ++b) {
    model.byte_ids_[b] = model.find(byte_to_unicode(static_cast<uint8_t>(b))).value_or(-1);
  }
  return model;
}

std::optional<int32_t> BpeModel::find(std::string_view token) const {
  const auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

Status BpeModel::add_merge(std::string_view left, std::string_view right) {
  const auto left_id = find(left), right_id = find(right);
  std::string merged;
  merged.reserve(left.size() + right.size());
  merged.append(left).append(right);
  const auto merged_id = find(merged);
  if (!left_id || !right_id || !merged_id) {
    return make_error("tokenizer.json: merge '", left, " ", right, "' (rank ", next_rank_,
                      ") uses a token that is not in the vocab: '",
                      !left_id    ? std::string(left)
                      : !right_id ? std::string(right)
                                  : merged,
                      "'");
  }
  merges_[pair_key(*left_id, *right_id)] = Merge{next_rank_++, *merged_id};
  return Status::ok();
}

const BpeModel::Merge* BpeModel::find_merge(int32_t left, int32_t right) const {
  const auto it = merges_.find(pair_key(left, right));
  return it == merges_.end() ? nullptr : &it->second;
}

void BpeModel::encode_word(std::string_view bytes, std::vector<int32_t>& out) const {
  if (bytes.empty()) return;
  if (options_.ignore_merges) {
    std::string mapped;
    mapped.reserve(bytes.size() * 2);
    for (const char c : bytes) mapped.append(byte_to_unicode(static_cast<uint8_t>(c)));
    if (const auto id = find(mapped)) {
      out.push_back(*id);
      return;
    }
  }

  // The parts of the word as a doubly linked list over a vector; id -1 marks a merged-away part.
  struct Part {
    int32_t id, prev, next;
  };
  std::vector<Part> parts;
  parts.reserve(bytes.size());
  auto append = [&](int32_t id) {
    const auto n = static_cast<int32_t>(parts.size());
    parts.push_back(Part{id, n - 1, -1});
    if (n > 0) parts[n - 1].next = n;
  };
  bool pending_unk = false;  // an unk not yet appended (HF holds it back to fuse)
  for (const char c : bytes) {
    const int32_t id = byte_ids_[static_cast<uint8_t>(c)];
    if (id >= 0) {
      if (pending_unk) append(*unk_id_);
      pending_unk = false;
      append(id);
    } else if (unk_id_) {
      if (pending_unk && !options_.fuse_unk) append(*unk_id_);
      pending_unk = true;
    }  // no unk token: HF drops the byte
  }
  if (pending_unk) append(*unk_id_);
  if (parts.empty()) return;

  // Candidate merges, lowest rank first, then leftmost; stale entries are skipped on pop.
  struct Candidate {
    int32_t rank, pos, merged_id;
    bool operator<(const Candidate& o) const {  // "lower priority than" for a max-heap
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::vector<Candidate> heap;
  heap.reserve(parts.size() * 2);
  auto consider = [&](int32_t pos) {
    const int32_t next = parts[pos].next;
    if (next < 0) return;
    if (const Merge* m = find_merge(parts[pos].id, parts[next].id)) {
      heap.push_back(Candidate{m->rank, pos, m->merged_id});
      std::push_heap(heap.begin(), heap.end());
    }
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(parts.size()); ++i) consider(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const Candidate top = heap.back();
    heap.pop_back();
    Part& left = parts[top.pos];
    if (left.id < 0 || left.next < 0) continue;
    Part& right = parts[left.next];
    const Merge* m = find_merge(left.id, right.id);
    if (m == nullptr || m->merged_id != top.merged_id) continue;  // stale
    left.id = top.merged_id;
    right.id = -1;
    left.next = right.next;
    if (right.next >= 0) parts[right.next].prev = top.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(top.pos);
  }
  for (int32_t i = 0; i >= 0; i = parts[i].next) out.push_back(parts[i].id);
}

}  // namespace starmesh::detail
