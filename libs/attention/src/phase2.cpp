#include "starmesh/attention/phase2.hpp"

#include <algorithm>
#include <numeric>

namespace starmesh {
namespace {

// Attention of q over (keys, values) with `mask`, left on the model's device (o in the
// activation dtype): the query host merges it there, no copy and no synchronisation.
Expected<AttentionState> device_partial(const Transformer& model, const Tensor& q, const Tensor& keys,
                                        const Tensor& values, AttentionMask mask) {
  backend_i& be = model.backend();
  const int64_t n = q.dim(0), hq = q.dim(1), d = q.dim(2);
  SM_ASSIGN(o, be.scratch(be.activation_dtype(), {n, hq, d}));
  SM_ASSIGN(lse, be.scratch(DType::f32, {n, hq}));
  SM_TRY(be.attention(q, keys, values, mask, model.attention_scale(), o, lse));
  return AttentionState{o, lse};
}

// Moves the parts that are not on the backend's device (from the wire: host f32) there in
// one upload per layer, packed back to back; parts already there stay where they are.
Status to_device(backend_i& be, std::vector<AttentionState>& parts) {
  int64_t total = 0;
  for (const AttentionState& p : parts)
    if (p.o.device() != be.device()) {
      if (p.o.dtype() != DType::f32 || p.lse.dtype() != DType::f32)
        return make_error("phase 2: a partial state from the wire must be f32");
      total += p.o.numel() + p.lse.numel();
    }
  if (total == 0) return {};
  Tensor packed = Tensor::zeros(DType::f32, {total});
  float* at = packed.data_as<float>();
  for (const AttentionState& p : parts)
    if (p.o.device() != be.device())
      for (const Tensor* t : {&p.o, &p.lse}) at = std::copy_n(t->data_as<float>(), t->numel(), at);
  SM_ASSIGN(dev, be.upload(packed, DType::f32));
  int64_t off = 0;
  for (AttentionState& p : parts)
    if (p.o.device() != be.device())
      for (Tensor* t : {&p.o, &p.lse}) {
        *t = dev.rows(off, off + t->numel()).reshape(t->shape());
        off += t->numel();
      }
  return {};
}

}  // namespace

Expected<AttentionState> shard_partial(const Transformer& model, const KvCache& shard, int layer, const Tensor& q) {
  if (layer < 0 || layer >= shard.layers()) return make_error("shard_partial: no layer ", layer);
  backend_i& be = model.backend();
  SM_ASSIGN(p, device_partial(model, q, shard.keys(layer), shard.values(layer), AttentionMask::none()));
  SM_ASSIGN(o_host, be.download(p.o));
  SM_ASSIGN(lse_host, be.download(p.lse));
  if (o_host.dtype() != DType::f32) {
    const std::vector<float> f = o_host.to_f32_vector();
    o_host = Tensor::from_f32(f, o_host.shape());
  }
  return AttentionState{o_host, lse_host};
}

Expected<std::vector<AttentionState>> InProcessShards::gather(int layer, const Tensor& q) {
  std::vector<AttentionState> out;
  for (const KvShard* s : shards_) {
    if (layer < 0 || layer >= s->cache.layers()) return make_error("phase 2: no layer ", layer);
    SM_ASSIGN(p, device_partial(model_, q, s->cache.keys(layer), s->cache.values(layer), AttentionMask::none()));
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
  const std::vector<const KvShard*>* here = remotes.shards_here();
  for (int l = 0; l < model.layers(); ++l) {
    SM_ASSIGN(qkv, model.project_qkv(l, hidden, pos, local_));
    SM_ASSIGN(attn, be.scratch(be.activation_dtype(), {n, qkv.q.dim(1), qkv.q.dim(2)}));
    SM_ASSIGN(lse, be.scratch(DType::f32, {n, qkv.q.dim(1)}));
    if (n == 1 && here) {
      // A decode step with every shard on this device: one call over all of them and the
      // local tokens (which the one new token sees whole: no mask), merged in the same order.
      std::vector<Tensor> ks, vs;
      for (const KvShard* s : *here) {
        if (l >= s->cache.layers()) return make_error("phase 2: no layer ", l);
        ks.push_back(s->cache.keys(l));
        vs.push_back(s->cache.values(l));
      }
      for (auto [k, v] : {std::pair{shard_->cache.keys(l), shard_->cache.values(l)},
                          std::pair{local_.keys(l, n), local_.values(l, n)}}) {
        ks.push_back(k);
        vs.push_back(v);
      }
      SM_TRY(be.attention_segments(qkv.q, ks, vs, model.attention_scale(), attn, lse));
      SM_TRY(model.finish_layer(l, hidden, attn));
      continue;
    }
    SM_ASSIGN(parts, remotes.gather(l, qkv.q));
    SM_TRY(to_device(be, parts));
    SM_ASSIGN(own_shard,
              device_partial(model, qkv.q, shard_->cache.keys(l), shard_->cache.values(l), AttentionMask::none()));
    SM_ASSIGN(own_local,
              device_partial(model, qkv.q, local_.keys(l, n), local_.values(l, n), AttentionMask::causal_from(past)));
    parts.push_back(std::move(own_shard));
    parts.push_back(std::move(own_local));
    std::vector<Tensor> os, ls;
    for (const AttentionState& p : parts) {
      os.push_back(p.o);
      ls.push_back(p.lse);
    }
    SM_TRY(be.merge_states(os, ls, attn, lse));
    SM_TRY(model.finish_layer(l, hidden, attn));
  }
  SM_TRY(local_.commit(n));
  return model.logits(all_rows ? hidden : hidden.rows(n - 1, n));
}

}  // namespace starmesh
