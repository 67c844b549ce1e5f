#include <doctest/doctest.h>

#include <limits>

#include "starmesh/attention/block_plan.hpp"

using namespace starmesh;

TEST_CASE("blocks are contiguous, cover the context, and go to hosts in order") {
  auto plan = plan_blocks(1000, 128, -1, 3).value();
  REQUIRE(plan.blocks.size() == 8);
  CHECK(plan.anchor_size == 128);
  CHECK(plan.blocks.back().begin == 896);
  CHECK(plan.blocks.back().end == 1000);  // the last block is shorter
  REQUIRE(plan.hosts.size() == 3);
  // 8 blocks over 3 hosts: 3, 3, 2, contiguous.
  CHECK(plan.hosts[0].first_block == 0);
  CHECK(plan.hosts[0].end_block == 3);
  CHECK(plan.hosts[1].begin == 384);
  CHECK(plan.hosts[2].end == 1000);
  CHECK(plan.query_host() == 2);
  int64_t next = 0;
  for (size_t b = 0; b < plan.blocks.size(); ++b) {
    CHECK(plan.blocks[b].begin == next);
    next = plan.blocks[b].end;
    if (b) CHECK(plan.blocks[b].host >= plan.blocks[b - 1].host);
  }
}

TEST_CASE("positions: anchor 0..a-1, then the block's global positions") {
  auto plan = plan_blocks(40, 16, 4, 2).value();
  CHECK(plan.encoding_positions(0) == std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15});
  const auto p2 = plan.encoding_positions(2);  // block [32, 40) with a 4-token anchor
  CHECK(p2 == std::vector<int32_t>{0, 1, 2, 3, 32, 33, 34, 35, 36, 37, 38, 39});
  CHECK_FALSE(plan.uses_anchor(0));
  CHECK(plan.uses_anchor(1));
  auto no_anchor = plan_blocks(40, 16, 0, 2).value();
  CHECK(no_anchor.encoding_positions(1).front() == 16);
}

TEST_CASE("hosts beyond the block count are not used, and bad plans are refused") {
  auto plan = plan_blocks(100, 64, -1, 8).value();
  CHECK(plan.hosts.size() == 2);
  CHECK(plan.query_host() == 1);
  auto big_anchor = plan_blocks(100, 16, 32, 2);
  REQUIRE_FALSE(big_anchor);
  CHECK(big_anchor.error().message.find("anchor_size (32) must not exceed block_size (16)") != std::string::npos);
  CHECK_FALSE(plan_blocks(100, 0, -1, 2));
  CHECK_FALSE(plan_blocks(0, 16, -1, 2));
  CHECK(plan_blocks(100, 16, -1, 0).error().message.find("hosts") != std::string::npos);
}

TEST_CASE("plans are bounded and overflow-safe: every refusal names its bound") {
  const int64_t max64 = std::numeric_limits<int64_t>::max();
  auto one = plan_blocks(1000, max64, -1, 4);  // a block larger than the context: one block, no overflow
  REQUIRE(one);
  CHECK(one->blocks.size() == 1);
  CHECK(one->hosts[0].end == 1000);
  CHECK(one->anchor_size == 1000);
  auto too_many_blocks = plan_blocks(kMaxContextTokens, 1, -1, 4);
  REQUIRE_FALSE(too_many_blocks);
  CHECK(too_many_blocks.code() == ErrorCode::invalid_argument);
  CHECK(too_many_blocks.error().message.find("more than 1048576") != std::string::npos);
  CHECK(plan_blocks(kMaxContextTokens + 1, 4096, -1, 4).error().message.find("16777216") != std::string::npos);
  CHECK(plan_blocks(100, 16, -2, 2).error().message.find("anchor_size must be >= 0, or -1") != std::string::npos);
  CHECK(plan_blocks(100, 16, -1, kMaxHosts + 1).error().message.find("[1, 4096]") != std::string::npos);
  CHECK(plan_blocks(100, -16, -1, 2).code() == ErrorCode::invalid_argument);
}
