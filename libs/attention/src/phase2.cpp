#include "starmesh/attention/phase2.hpp"

#include <numeric>

namespace starmesh {
namespace {

// Attention of q over (keys, values) with `mask`, as a host state.
Expected<AttentionState> partial(const Transformer& model, const Tensor& q, const Tensor& keys, const Tensor& values,
                                 AttentionMask mask) {
  backend_i& be = model.backend();
  const int64_t n = q.dim(0), hq = q.dim(1), d = q.dim(2);
  SM_ASSIGN(o, be.alloc(be.activation_dtype(), {n, hq, d}));
  SM_ASSIGN(lse, be.alloc(DType::f32, {n, hq}));
  SM_TRY(be.attention(q, keys, values, mask, model.attention_scale(), o, lse));
  SM_ASSIGN(o_host, be.download(o));
  SM_ASSIGN(lse_host, be.download(lse));
  if (o_host.dtype() != DType::f32) {
    const std::vector<float> f = o_host.to_f32_vector();
    o_host = Tensor::from_f32(f, o_host.shape());
  }
  return AttentionState{o_host, lse_host};
}

}  // namespace

Expected<AttentionState> shard_partial(const Transformer& model, const KvCache& shard, int layer, const Tensor& q) {
  if (layer < 0 || layer >= shard.layers()) return make_error("shard_partial: no layer ", layer);
  return partial(model, q, shard.keys(layer), shard.values(layer), AttentionMask::none());
}

Expected<std::vector<AttentionState>> InProcessShards::gather(int layer, const Tensor& q) {
  std::vector<AttentionState> out;
  for (const KvShard* s : shards_) {
    SM_ASSIGN(p, shard_partial(model_, s->cache, layer, q));
    out.push_back(std::move(p));
  }
  return out;
}

Expected<QueryHost> QueryHost::create(const Transformer& model, std::shared_ptr<const KvShard> shard,
                                      int64_t context_tokens, int64_t capacity) {
  if (!shard) return make_error("the query host needs its shard");
  if (shard->end != context_tokens)
    return make_error("the query host must hold the last block: its shard ends at ", shard->end, ", the context at ",
                      context_tokens);
  SM_ASSIGN(local, model.make_cache(capacity));
  return QueryHost(model, std::move(shard), std::move(local), context_tokens);
}

Expected<Tensor> QueryHost::step(std::span<const int32_t> ids, remote_partials_i& remotes, bool all_rows) {
  const Transformer& model = *model_;
  backend_i& be = model.backend();
  const int64_t n = int64_t(ids.size()), past = local_.length();
  if (n == 0) return make_error("phase 2: no tokens to run");
  if (past + n > local_.capacity())
    return make_error("phase 2: ", past + n, " query and generated tokens exceed the local capacity of ",
                      local_.capacity());
  std::vector<int32_t> positions(static_cast<size_t>(n));
  std::iota(positions.begin(), positions.end(), int32_t(context_tokens_ + past));
  SM_ASSIGN(pos, model.positions(positions));
  SM_ASSIGN(hidden, model.embed(ids));
  for (int l = 0; l < model.layers(); ++l) {
    SM_ASSIGN(qkv, model.project_qkv(l, hidden, pos));
    SM_TRY(local_.write(l, qkv.k, qkv.v));
    SM_ASSIGN(remote, remotes.gather(l, qkv.q));
    std::vector<AttentionState> parts = std::move(remote);
    SM_ASSIGN(own_shard, partial(model, qkv.q, shard_->cache.keys(l), shard_->cache.values(l), AttentionMask::none()));
    SM_ASSIGN(own_local,
              partial(model, qkv.q, local_.keys(l, n), local_.values(l, n), AttentionMask::causal_from(past)));
    parts.push_back(std::move(own_shard));
    parts.push_back(std::move(own_local));
    SM_ASSIGN(merged, merge(parts));
    SM_ASSIGN(attn, be.upload(merged.o, be.activation_dtype()));
    SM_TRY(model.finish_layer(l, hidden, attn));
  }
  SM_TRY(local_.commit(n));
  return model.logits(all_rows ? hidden : hidden.rows(n - 1, n));
}

}  // namespace starmesh
