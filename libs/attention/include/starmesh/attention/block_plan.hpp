#pragma once
// The Star Attention block plan (STAR_ATTENTION.md, phase 1): context split into blocks,
// blocks assigned to hosts in contiguous ranges, the anchor, and every token's position id.
#include <cstdint>
#include <string>
#include <vector>

#include "starmesh/core/expected.hpp"

namespace starmesh {

struct Block {
  int64_t begin = 0, end = 0;  // context token range [begin, end)
  int host = 0;
};

struct HostRange {
  int first_block = 0, end_block = 0;  // blocks [first_block, end_block)
  int64_t begin = 0, end = 0;          // context tokens [begin, end): the host's shard
};

struct BlockPlan {
  int64_t context_tokens = 0;
  int64_t block_size = 0;
  int64_t anchor_size = 0;  // 0: no anchor (ablation); otherwise the first anchor_size tokens
  std::vector<Block> blocks;
  std::vector<HostRange> hosts;  // only hosts that hold at least one block

  int query_host() const { return int(hosts.size()) - 1; }  // holds the last block
  // Position ids of the sequence that encodes block b: [anchor ; block] for b > 0 with an
  // anchor (anchor 0..a-1, then the block's global positions), the block alone otherwise.
  std::vector<int32_t> encoding_positions(int b) const;
  bool uses_anchor(int b) const { return b > 0 && anchor_size > 0; }
  std::string describe() const;
};

// Refuses, with a message, zero or negative sizes, an anchor larger than a block, and more
// hosts than blocks is fine: the extra hosts are left out of the plan.
// anchor_size < 0 means "the default": anchor = block (the paper's best setting).
Expected<BlockPlan> plan_blocks(int64_t context_tokens, int64_t block_size, int64_t anchor_size, int hosts);

}  // namespace starmesh
