#include "starmesh/attention/block_plan.hpp"

#include <numeric>

namespace starmesh {

Expected<BlockPlan> plan_blocks(int64_t context_tokens, int64_t block_size, int64_t anchor_size, int hosts) {
  auto bad = [](auto&&... parts) { return make_error(ErrorCode::invalid_argument, parts...); };
  if (context_tokens <= 0) return bad("the context is empty: Star Attention needs at least one context token");
  if (context_tokens > kMaxContextTokens)
    return bad("the context has ", context_tokens, " tokens, more than the ", kMaxContextTokens, " a plan may hold");
  if (block_size <= 0) return bad("block_size must be > 0, got ", block_size);
  if (hosts <= 0 || hosts > kMaxHosts) return bad("the number of hosts must be in [1, ", kMaxHosts, "], got ", hosts);
  if (anchor_size < -1) return bad("anchor_size must be >= 0, or -1 for the block size, got ", anchor_size);
  if (anchor_size == -1) anchor_size = block_size;
  if (anchor_size > block_size)
    return bad("anchor_size (", anchor_size, ") must not exceed block_size (", block_size, ")");
  // Overflow-safe: no context_tokens + block_size.
  const int64_t n_blocks = context_tokens / block_size + (context_tokens % block_size != 0 ? 1 : 0);
  if (n_blocks > kMaxBlocks)
    return bad(context_tokens, " context tokens in blocks of ", block_size, " make ", n_blocks, " blocks, more than ",
               kMaxBlocks, ": use larger blocks");
  BlockPlan plan;
  plan.context_tokens = context_tokens;
  plan.block_size = block_size;
  plan.anchor_size = std::min(anchor_size, context_tokens);
  const int used = int(std::min<int64_t>(hosts, n_blocks));
  // Contiguous ranges, as even as possible; the earlier hosts take the remainder.
  int block = 0;
  for (int h = 0; h < used; ++h) {
    const int count = int(n_blocks / used + (h < n_blocks % used ? 1 : 0));
    HostRange r;
    r.first_block = block;
    r.end_block = block + count;
    r.begin = block * block_size;
    r.end = std::min(context_tokens, int64_t(block + count) * block_size);
    for (int b = block; b < block + count; ++b)
      plan.blocks.push_back({b * block_size, std::min(context_tokens, (b + 1) * block_size), h});
    plan.hosts.push_back(r);
    block += count;
  }
  return plan;
}

std::vector<int32_t> BlockPlan::encoding_positions(int b) const {
  const Block& blk = blocks.at(size_t(b));
  std::vector<int32_t> pos;
  if (uses_anchor(b)) {
    pos.resize(size_t(anchor_size));
    std::iota(pos.begin(), pos.end(), 0);
  }
  for (int64_t t = blk.begin; t < blk.end; ++t) pos.push_back(int32_t(t));
  return pos;
}

std::string BlockPlan::describe() const {
  std::string s = std::to_string(context_tokens) + " context tokens, " + std::to_string(blocks.size()) + " blocks of " +
                  std::to_string(block_size) + ", anchor " + std::to_string(anchor_size) + ", " +
                  std::to_string(hosts.size()) + " hosts:";
  for (size_t h = 0; h < hosts.size(); ++h)
    s += " [" + std::to_string(hosts[h].begin) + ", " + std::to_string(hosts[h].end) + ")";
  return s;
}

}  // namespace starmesh
