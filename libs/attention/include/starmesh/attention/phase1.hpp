#pragma once
// Phase 1 of Star Attention: a host encodes its blocks with only local attention plus the
// anchor, no communication. The anchor's KV is computed once per host and reused for all its
// blocks; only the blocks' own KV is kept (the shard).
#include <atomic>
#include <mutex>
#include <span>

#include "starmesh/attention/block_plan.hpp"
#include "starmesh/core/compute_lock.hpp"
#include "starmesh/core/progress.hpp"
#include "starmesh/model/transformer.hpp"

namespace starmesh {

// The KV of context tokens [begin, end) at their global positions, every layer.
struct KvShard {
  int64_t begin = 0, end = 0;
  KvCache cache;  // length() == end - begin
};

// The anchor's KV (the first plan.anchor_size context tokens encoded plainly), every layer.
Expected<KvCache> encode_anchor(const Transformer& model, const BlockPlan& plan, std::span<const int32_t> context);

// How a server runs phase 1 beside other work on the same model: `compute` (if set) is held
// per chunk of `chunk_tokens` tokens of a block (or of the anchor; 0: whole blocks), not for
// the whole shard, so other requests' steps interleave with a long phase 1; `stop` (if set)
// ends it between chunks with a `cancelled` error (the request was freed); `on_block` (if set)
// hears of each block finished on the device (done of the host's blocks). A block in chunks
// gives its KV up to rounding (its attention over the anchor and over itself merged, not one).
struct EncodeControl {
  compute_lock_i* compute = nullptr;  // held per chunk (null: none)
  const std::atomic<bool>* stop = nullptr;
  ProgressFn on_block;
  int64_t chunk_tokens = 0;
};

// Encodes the blocks of `host`, block by block. `anchor` is the host's anchor KV
// (encode_anchor), or null when the plan has no anchor or the host holds only block 0.
Expected<KvShard> encode_shard(const Transformer& model, const BlockPlan& plan, int host,
                               std::span<const int32_t> context, const KvCache* anchor,
                               const EncodeControl& control = {});

// One host's whole phase 1 (its anchor, then its blocks): what a context worker runs.
// `context` holds the whole context's length; only the anchor and this host's blocks are read.
Expected<KvShard> encode_host(const Transformer& model, const BlockPlan& plan, int host,
                              std::span<const int32_t> context, const EncodeControl& control = {});

// Whether `host` needs the anchor KV at all.
bool host_needs_anchor(const BlockPlan& plan, int host);

}  // namespace starmesh
