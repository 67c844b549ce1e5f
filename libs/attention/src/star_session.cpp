#include "starmesh/attention/star_session.hpp"

#include <algorithm>
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
                                                           const StarOptions& options, int64_t capacity,
                                                           const ProgressFn& on_block) {
  using Clock = std::chrono::steady_clock;
  backend_i& be = model.backend();
  // Device work is timed to its end (synchronize), not to when it was queued.
  auto seconds_since = [&](Clock::time_point t) -> Expected<double> {
    SM_TRY(be.synchronize());
    return std::chrono::duration<double>(Clock::now() - t).count();
  };
  const auto t0 = Clock::now();
  SM_ASSIGN(plan, plan_blocks(int64_t(context.size()), options.block_size, options.anchor_size, options.hosts));
  // Every host would compute the same anchor KV; in one process it is computed once, and
  // its time is counted for every host that needs it.
  std::optional<KvCache> anchor;
  double anchor_seconds = 0;
  for (int h = 0; h < int(plan.hosts.size()) && !anchor; ++h) {
    if (!host_needs_anchor(plan, h)) continue;
    const auto ta = Clock::now();
    SM_ASSIGN(a, encode_anchor(model, plan, context));
    anchor = std::move(a);
    SM_ASSIGN(sec, seconds_since(ta));
    anchor_seconds = sec;
  }
  std::vector<KvShard> shards;
  std::vector<double> host_seconds;
  for (int h = 0; h < int(plan.hosts.size()); ++h) {
    const auto th = Clock::now();
    EncodeControl control;
    if (on_block) {
      const int64_t before = plan.hosts[size_t(h)].first_block, total = int64_t(plan.blocks.size());
      control.on_block = [&, before, total](int64_t done, int64_t) { on_block(before + done, total); };
    }
    SM_ASSIGN(shard, encode_shard(model, plan, h, context, anchor ? &*anchor : nullptr, control));
    shards.push_back(std::move(shard));
    SM_ASSIGN(sec, seconds_since(th));
    host_seconds.push_back(sec + (host_needs_anchor(plan, h) ? anchor_seconds : 0.0));
  }
  KvShard last = std::move(shards.back());
  shards.pop_back();
  SM_ASSIGN(qh, QueryHost::create(model, std::move(last), plan.context_tokens, capacity));
  std::unique_ptr<StarSession> s(new StarSession(std::move(plan), std::move(shards), std::move(qh), model));
  SM_ASSIGN(total, seconds_since(t0));
  s->phase1_seconds_ = total;
  s->host_phase1_seconds_ = std::move(host_seconds);
  return s;
}

}  // namespace starmesh
