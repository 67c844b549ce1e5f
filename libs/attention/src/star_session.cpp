#include "starmesh/attention/star_session.hpp"

#include <chrono>
#include <optional>

namespace starmesh {
namespace {
std::vector<const KvShard*> pointers(const std::vector<KvShard>& shards) {
  std::vector<const KvShard*> out;
  for (const KvShard& s : shards) out.push_back(&s);
  return out;
}
}  // namespace

StarSession::StarSession(BlockPlan plan, std::vector<KvShard> others, QueryHost qh, const Transformer& model)
    : plan_(std::move(plan)),
      others_(std::move(others)),
      query_host_(std::move(qh)),
      remotes_(model, pointers(others_)) {}

Expected<std::unique_ptr<StarSession>> StarSession::encode(const Transformer& model, std::span<const int32_t> context,
                                                           const StarOptions& options, int64_t capacity) {
  const auto t0 = std::chrono::steady_clock::now();
  SM_ASSIGN(plan, plan_blocks(int64_t(context.size()), options.block_size, options.anchor_size, options.hosts));
  // Every host would compute the same anchor KV; in one process it is computed once.
  std::optional<KvCache> anchor;
  for (int h = 0; h < int(plan.hosts.size()) && !anchor; ++h) {
    if (!host_needs_anchor(plan, h)) continue;
    SM_ASSIGN(a, encode_anchor(model, plan, context));
    anchor = std::move(a);
  }
  std::vector<KvShard> shards;
  for (int h = 0; h < int(plan.hosts.size()); ++h) {
    SM_ASSIGN(shard, encode_shard(model, plan, h, context, anchor ? &*anchor : nullptr));
    shards.push_back(std::move(shard));
  }
  KvShard last = std::move(shards.back());
  shards.pop_back();
  SM_ASSIGN(qh, QueryHost::create(model, std::move(last), plan.context_tokens, capacity));
  SM_TRY(model.backend().synchronize());  // the time ends when the device's work does, not when it was queued
  std::unique_ptr<StarSession> s(new StarSession(std::move(plan), std::move(shards), std::move(qh), model));
  s->phase1_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return s;
}

}  // namespace starmesh
