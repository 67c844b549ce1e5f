#pragma once
// Star Attention with every host simulated in one process: phase 1 for each host, then a
// query host that gathers the other shards' partials by direct calls. This is the
// single-process truth that the distributed mesh is compared with.
#include <algorithm>
#include <memory>
#include <span>

#include "starmesh/attention/phase2.hpp"

namespace starmesh {

struct StarOptions {
  int64_t block_size = 0;
  int64_t anchor_size = -1;  // -1: anchor = block (the default); 0: no anchor (ablation)
  int hosts = 1;
};

class StarSession {
 public:
  // Plans the blocks and runs phase 1 on every host. `capacity`: query + generated tokens.
  // `on_block` (if set) hears of each block encoded, over every host (done of the plan's).
  static Expected<std::unique_ptr<StarSession>> encode(const Transformer& model, std::span<const int32_t> context,
                                                       const StarOptions& options, int64_t capacity,
                                                       const ProgressFn& on_block = {});

  // Phase 2: runs ids through the query host; logits of the last token [1, vocab].
  Expected<Tensor> step(std::span<const int32_t> ids, bool all_rows = false) {
    return query_host_.step(ids, remotes_, all_rows);
  }

  // The query host and its view of the other shards, for a caller that steps several sessions
  // as one batch (QueryHost::step_batch; bench/decode_bench --batches).
  QueryHost& query_host() { return query_host_; }
  remote_partials_i& remotes() { return remotes_; }

  const BlockPlan& plan() const { return plan_; }
  // Phase 1 as run here, every host one after another on one device.
  double phase1_seconds() const { return phase1_seconds_; }
  // Each host's own phase 1 (its anchor and its blocks, timed to the device's end), and the
  // slowest: what phase 1 takes when the hosts run in parallel, one device each.
  const std::vector<double>& host_phase1_seconds() const { return host_phase1_seconds_; }
  double phase1_max_host_seconds() const {
    return host_phase1_seconds_.empty() ? 0.0
                                        : *std::max_element(host_phase1_seconds_.begin(), host_phase1_seconds_.end());
  }

 private:
  StarSession(BlockPlan plan, std::vector<KvShard> others, QueryHost qh, const Transformer& model);

  BlockPlan plan_;
  std::vector<KvShard> others_;  // shards of hosts 0 .. query_host - 1
  QueryHost query_host_;
  InProcessShards remotes_;
  double phase1_seconds_ = 0;
  std::vector<double> host_phase1_seconds_;
};

}  // namespace starmesh
