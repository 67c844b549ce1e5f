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

// The most a plan may describe: requests and peers set these numbers, and a plan allocates
// per block and per host, so each is bounded before anything is computed from it.
inline constexpr int64_t kMaxContextTokens = int64_t(1) << 24;  // 16,777,216 tokens
inline constexpr int64_t kMaxBlocks = int64_t(1) << 20;         // context_tokens / block_size
inline constexpr int kMaxHosts = 4096;

// Refuses (invalid_argument), naming the bound: an empty or too long context, a block size
// <= 0, an anchor_size below -1 or larger than a block, hosts <= 0 or above kMaxHosts, more
// than kMaxBlocks blocks. More hosts than blocks is fine: the extra hosts are left out.
// anchor_size -1 means "the default": anchor = block (the paper's best setting); 0: none.
Expected<BlockPlan> plan_blocks(int64_t context_tokens, int64_t block_size, int64_t anchor_size, int hosts);

}  // namespace starmesh
