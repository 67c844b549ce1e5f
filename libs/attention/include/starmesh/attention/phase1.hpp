#pragma once
// Phase 1 of Star Attention: a host encodes its blocks with only local attention plus the
// anchor, no communication. The anchor's KV is computed once per host and reused for all its
// blocks; only the blocks' own KV is kept (the shard).
#include <span>

#include "starmesh/attention/block_plan.hpp"
#include "starmesh/model/transformer.hpp"

namespace starmesh {

// The KV of context tokens [begin, end) at their global positions, every layer.
struct KvShard {
  int64_t begin = 0, end = 0;
  KvCache cache;  // length() == end - begin
};

// The anchor's KV (the first plan.anchor_size context tokens encoded plainly), every layer.
Expected<KvCache> encode_anchor(const Transformer& model, const BlockPlan& plan, std::span<const int32_t> context);

// Encodes the blocks of `host`. `anchor` is the host's anchor KV (encode_anchor), or null
// when the plan has no anchor or the host holds only block 0.
Expected<KvShard> encode_shard(const Transformer& model, const BlockPlan& plan, int host,
                               std::span<const int32_t> context, const KvCache* anchor);

// Whether `host` needs the anchor KV at all.
bool host_needs_anchor(const BlockPlan& plan, int host);

}  // namespace starmesh
