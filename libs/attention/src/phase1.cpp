#include "starmesh/attention/phase1.hpp"

#include <algorithm>
#include <optional>

namespace starmesh {
namespace {

// Encodes one block: its tokens attend causally to themselves and, before them, to the
// anchor KV (if any). Writes the block's KV at the end of `shard` and commits it.
Status encode_block(const Transformer& model, const BlockPlan& plan, int b, std::span<const int32_t> context,
                    const KvCache* anchor, KvCache& shard) {
  backend_i& be = model.backend();
  const Block& blk = plan.blocks[size_t(b)];
  const int64_t n = blk.end - blk.begin;
  const auto tokens = context.subspan(size_t(blk.begin), size_t(n));
  std::vector<int32_t> positions = plan.encoding_positions(b);
  const int64_t a = plan.uses_anchor(b) ? plan.anchor_size : 0;
  positions.erase(positions.begin(), positions.begin() + a);  // the block's own positions

  const LlamaConfig& cfg = model.config();
  const int64_t hq = cfg.num_attention_heads, hkv = cfg.num_key_value_heads, d = cfg.head_dim;
  const DType act = be.activation_dtype();
  SM_ASSIGN(pos, model.positions(positions));
  SM_ASSIGN(hidden, model.embed(tokens));
  SM_ASSIGN(out, be.scratch(act, {n, hq, d}));
  SM_ASSIGN(lse, be.scratch(DType::f32, {n, hq}));
  Tensor keys, values;  // [a + n, hkv, d]: the anchor's rows, then the block's
  if (a > 0) {
    SM_ASSIGN(k, be.scratch(act, {a + n, hkv, d}));
    SM_ASSIGN(v, be.scratch(act, {a + n, hkv, d}));
    keys = k;
    values = v;
  }
  for (int l = 0; l < model.layers(); ++l) {
    SM_ASSIGN(qkv, model.project_qkv(l, hidden, pos, shard));
    if (l == model.layers() - 1) break;  // the shard keeps KV only: the last layer's outputs feed nothing
    if (a > 0) {
      SM_TRY(be.copy(anchor->keys(l), keys.rows(0, a)));
      SM_TRY(be.copy(anchor->values(l), values.rows(0, a)));
      SM_TRY(be.copy(qkv.k, keys.rows(a, a + n)));
      SM_TRY(be.copy(qkv.v, values.rows(a, a + n)));
      SM_TRY(be.attention(qkv.q, keys, values, AttentionMask::causal_from(a), model.attention_scale(), out, lse));
    } else {
      SM_TRY(be.attention(qkv.q, qkv.k, qkv.v, AttentionMask::causal_from(0), model.attention_scale(), out, lse));
    }
    SM_TRY(model.finish_layer(l, hidden, out));
  }
  return shard.commit(n);
}

// Tokens [s, e) of block b, a chunk of it (phase 1 in pieces, so that a long block does not
// hold the device): they attend to the whole anchor KV (if any) and causally to the block's
// tokens up to them, the earlier chunks' already in `shard`; the two partial states merged.
// Writes the chunk's KV at the end of `shard` and commits it.
Status encode_chunk(const Transformer& model, const BlockPlan& plan, int b, std::span<const int32_t> context,
                    const KvCache* anchor, KvCache& shard, int64_t s, int64_t e) {
  backend_i& be = model.backend();
  const Block& blk = plan.blocks[size_t(b)];
  const int64_t m = e - s, row0 = shard.length() - s;  // the block's first row in the shard
  std::vector<int32_t> positions = plan.encoding_positions(b);
  const int64_t a = plan.uses_anchor(b) ? plan.anchor_size : 0;
  positions = std::vector<int32_t>(positions.begin() + a + s, positions.begin() + a + e);
  const LlamaConfig& cfg = model.config();
  const int64_t hq = cfg.num_attention_heads, d = cfg.head_dim;
  const DType act = be.activation_dtype();
  SM_ASSIGN(pos, model.positions(positions));
  SM_ASSIGN(hidden, model.embed(context.subspan(size_t(blk.begin + s), size_t(m))));
  SM_ASSIGN(out, be.scratch(act, {m, hq, d}));
  SM_ASSIGN(lse, be.scratch(DType::f32, {m, hq}));
  for (int l = 0; l < model.layers(); ++l) {
    SM_ASSIGN(qkv, model.project_qkv(l, hidden, pos, shard));
    if (l == model.layers() - 1) break;  // as in encode_block: KV only
    const int64_t end = shard.length() + m;
    const Tensor keys = shard.keys(l, m).rows(row0, end), values = shard.values(l, m).rows(row0, end);
    const AttentionMask mask = AttentionMask::causal_from(s);  // block token s + i sees block tokens <= s + i
    if (a > 0) {
      SM_ASSIGN(o_anchor, be.scratch(act, {m, hq, d}));
      SM_ASSIGN(l_anchor, be.scratch(DType::f32, {m, hq}));
      SM_ASSIGN(o_block, be.scratch(act, {m, hq, d}));
      SM_ASSIGN(l_block, be.scratch(DType::f32, {m, hq}));
      SM_TRY(be.attention(qkv.q, anchor->keys(l), anchor->values(l), AttentionMask::none(), model.attention_scale(),
                          o_anchor, l_anchor));
      SM_TRY(be.attention(qkv.q, keys, values, mask, model.attention_scale(), o_block, l_block));
      const Tensor os[] = {o_anchor, o_block}, ls[] = {l_anchor, l_block};
      SM_TRY(be.merge_states(os, ls, out, lse));
    } else {
      SM_TRY(be.attention(qkv.q, keys, values, mask, model.attention_scale(), out, lse));
    }
    SM_TRY(model.finish_layer(l, hidden, out));
  }
  return shard.commit(m);
}

}  // namespace

bool host_needs_anchor(const BlockPlan& plan, int host) {
  const HostRange& r = plan.hosts.at(size_t(host));
  for (int b = r.first_block; b < r.end_block; ++b)
    if (plan.uses_anchor(b)) return true;
  return false;
}

Expected<KvCache> encode_anchor(const Transformer& model, const BlockPlan& plan, std::span<const int32_t> context) {
  if (plan.anchor_size <= 0) return make_error("encode_anchor: the plan has no anchor");
  SM_ASSIGN(cache, model.make_cache(plan.anchor_size, Transformer::KvMemory::working));
  SM_TRY(model.append_kv(context.first(size_t(plan.anchor_size)), cache));
  return cache;
}

Expected<KvShard> encode_shard(const Transformer& model, const BlockPlan& plan, int host,
                               std::span<const int32_t> context, const KvCache* anchor, const EncodeControl& control) {
  if (host < 0 || host >= int(plan.hosts.size()))
    return make_error("encode_shard: host ", host, " holds no blocks in a plan of ", plan.hosts.size(), " hosts");
  if (int64_t(context.size()) != plan.context_tokens)
    return make_error("encode_shard: the plan is for ", plan.context_tokens, " context tokens, got ", context.size());
  if (host_needs_anchor(plan, host) && (!anchor || anchor->length() != plan.anchor_size))
    return make_error("encode_shard: host ", host, " needs the anchor KV of ", plan.anchor_size, " tokens");
  const HostRange& r = plan.hosts[size_t(host)];
  SM_ASSIGN(cache, model.make_cache(r.end - r.begin));
  KvShard shard{r.begin, r.end, std::move(cache)};
  for (int b = r.first_block; b < r.end_block; ++b) {
    const int64_t n = plan.blocks[size_t(b)].end - plan.blocks[size_t(b)].begin;
    const int64_t chunk = control.chunk_tokens > 0 ? std::min(control.chunk_tokens, n) : n;
    std::unique_lock<compute_lock_i> lock;
    for (int64_t s = 0; s < n; s += chunk) {
      if (control.stop && control.stop->load()) return make_error(ErrorCode::cancelled, "stopped during phase 1");
      lock = {};  // the device is free between chunks
      if (control.compute) lock = std::unique_lock(*control.compute);
      if (chunk == n)
        SM_TRY(encode_block(model, plan, b, context, anchor, shard.cache));
      else
        SM_TRY(encode_chunk(model, plan, b, context, anchor, shard.cache, s, std::min(n, s + chunk)));
    }
    if (control.on_block) {  // finished, not queued: a block takes milliseconds, the wait microseconds
      SM_TRY(model.backend().synchronize());
      lock = {};
      control.on_block(b + 1 - r.first_block, r.end_block - r.first_block);
    }
  }
  return shard;
}

Expected<KvShard> encode_host(const Transformer& model, const BlockPlan& plan, int host,
                              std::span<const int32_t> context, const EncodeControl& control) {
  if (host < 0 || host >= int(plan.hosts.size()))
    return make_error("encode_host: host ", host, " holds no blocks in a plan of ", plan.hosts.size(), " hosts");
  std::optional<KvCache> anchor;
  if (host_needs_anchor(plan, host)) {
    if (plan.anchor_size <= 0) return make_error("encode_host: the plan has no anchor");
    // A plain prefill of the anchor's tokens, in chunks as the blocks are.
    SM_ASSIGN(cache, model.make_cache(plan.anchor_size, Transformer::KvMemory::working));
    const int64_t chunk = control.chunk_tokens > 0 ? control.chunk_tokens : plan.anchor_size;
    for (int64_t s = 0; s < plan.anchor_size; s += chunk) {
      if (control.stop && control.stop->load()) return make_error(ErrorCode::cancelled, "stopped during phase 1");
      std::unique_lock<compute_lock_i> lock;
      if (control.compute) lock = std::unique_lock(*control.compute);
      const int64_t e = std::min(plan.anchor_size, s + chunk);
      SM_TRY(model.append_kv(context.subspan(size_t(s), size_t(e - s)), cache));
    }
    anchor = std::move(cache);
  }
  return encode_shard(model, plan, host, context, anchor ? &*anchor : nullptr, control);
}

}  // namespace starmesh
