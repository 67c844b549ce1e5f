#include "starmesh/attention/block_plan.hpp"

#include <numeric>

namespace starmesh {

Expected<BlockPlan> plan_blocks(int64_t context_tokens, int64_t block_size, int64_t anchor_size, int hosts) {
  if (context_tokens <= 0)
    return make_error(ErrorCode::invalid_argument,
                      "the context is empty: Star Attention needs at least one context token");
  if (block_size <= 0) return make_error(ErrorCode::invalid_argument, "block_size must be > 0, got ", block_size);
  if (hosts <= 0) return make_error(ErrorCode::invalid_argument, "the number of hosts must be > 0, got ", hosts);
  if (anchor_size < 0) anchor_size = block_size;
  if (anchor_size > block_size)
    return make_error(ErrorCode::invalid_argument, "anchor_size (", anchor_size, ") must not exceed block_size (",
                      block_size, ")");
  BlockPlan plan;
  plan.context_tokens = context_tokens;
  plan.block_size = block_size;
  plan.anchor_size = std::min(anchor_size, context_tokens);
  const int64_t n_blocks = (context_tokens + block_size - 1) / block_size;
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
