#include "starmesh/model/transformer.hpp"

#include <cmath>
#include <numeric>
#include <string>

#include "starmesh/model/safetensors.hpp"

namespace starmesh {
namespace {

Expected<Tensor> load_weight(backend_i& backend, const Checkpoint& ckpt, const std::string& name, const Shape& shape) {
  SM_ASSIGN(host, ckpt.get(name, shape));
  return backend.upload(host, backend.activation_dtype());
}

// Copies `parts` (same width) one under another into one tensor and points each part at its
// rows of it, so that the model keeps one copy.
Expected<Tensor> stack_rows(backend_i& backend, std::initializer_list<Tensor*> parts) {
  int64_t rows = 0;
  for (const Tensor* t : parts) rows += t->dim(0);
  const Tensor* first = *parts.begin();
  SM_ASSIGN(stacked, backend.alloc(first->dtype(), {rows, first->dim(1)}));
  int64_t at = 0;
  for (Tensor* t : parts) {
    const Tensor dst = stacked.rows(at, at + t->dim(0));
    SM_TRY(backend.copy(*t, dst));
    *t = dst;
    at += t->dim(0);
  }
  return stacked;
}

}  // namespace

Expected<Transformer> Transformer::load(backend_i& backend, const std::filesystem::path& dir,
                                        const ProgressFn& on_layer) {
  SM_ASSIGN(config, load_llama_config(dir));
  SM_ASSIGN(ckpt, Checkpoint::open(dir));
  Transformer m;
  m.backend_ = &backend;
  m.config_ = config;
  const int64_t hidden = config.hidden_size, d = config.head_dim;
  const int64_t hq = config.num_attention_heads, hkv = config.num_key_value_heads;
  const int64_t ffn = config.intermediate_size, vocab = config.vocab_size;
  m.scale_ = float(1.0 / std::sqrt(double(d)));

  SM_ASSIGN(embed, load_weight(backend, ckpt, "model.embed_tokens.weight", {vocab, hidden}));
  SM_ASSIGN(norm, load_weight(backend, ckpt, "model.norm.weight", {hidden}));
  m.embed_ = embed;
  m.final_norm_ = norm;
  if (config.tie_word_embeddings) {
    m.lm_head_ = m.embed_;
  } else {
    SM_ASSIGN(head, load_weight(backend, ckpt, "lm_head.weight", {vocab, hidden}));
    m.lm_head_ = head;
  }
  for (int l = 0; l < config.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerWeights w;
    struct Item {
      Tensor* dst;
      std::string name;
      Shape shape;
    };
    const Item items[] = {
        {&w.attn_norm, p + "input_layernorm.weight", {hidden}},
        {&w.wq, p + "self_attn.q_proj.weight", {hq * d, hidden}},
        {&w.wk, p + "self_attn.k_proj.weight", {hkv * d, hidden}},
        {&w.wv, p + "self_attn.v_proj.weight", {hkv * d, hidden}},
        {&w.wo, p + "self_attn.o_proj.weight", {hidden, hq * d}},
        {&w.mlp_norm, p + "post_attention_layernorm.weight", {hidden}},
        {&w.w_gate, p + "mlp.gate_proj.weight", {ffn, hidden}},
        {&w.w_up, p + "mlp.up_proj.weight", {ffn, hidden}},
        {&w.w_down, p + "mlp.down_proj.weight", {hidden, ffn}},
    };
    for (const Item& it : items) {
      SM_ASSIGN(t, load_weight(backend, ckpt, it.name, it.shape));
      *it.dst = t;
    }
    // Q, K, V and gate, up stacked by rows: a one-token step reads each stack with one GEMM.
    SM_ASSIGN(qkv, stack_rows(backend, {&w.wq, &w.wk, &w.wv}));
    SM_ASSIGN(gate_up, stack_rows(backend, {&w.w_gate, &w.w_up}));
    w.wqkv = qkv;
    w.w_gate_up = gate_up;
    m.layers_.push_back(std::move(w));
    if (on_layer) on_layer(l + 1, config.num_hidden_layers);
  }
  const std::vector<float> inv_freq = rope_inv_freq(config);
  SM_ASSIGN(freq, backend.upload(Tensor::from_f32(inv_freq, {int64_t(inv_freq.size())}), DType::f32));
  m.inv_freq_ = freq;
  return m;
}

Expected<Tensor> Transformer::embed(std::span<const int32_t> ids) const {
  const int64_t n = int64_t(ids.size());
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= config_.vocab_size)
      return make_error(ErrorCode::invalid_argument, "token id ", ids[i], " at position ", i,
                        " is outside the vocabulary [0, ", config_.vocab_size, ")");
  SM_ASSIGN(dev_ids, backend_->upload(Tensor::from_i32(ids, {n}), DType::i32));
  SM_ASSIGN(hidden, backend_->scratch(backend_->activation_dtype(), {n, config_.hidden_size}));
  SM_TRY(backend_->embedding(dev_ids, embed_, hidden));
  return hidden;
}

Expected<Tensor> Transformer::positions(std::span<const int32_t> ids) const {
  return backend_->upload(Tensor::from_i32(ids, {int64_t(ids.size())}), DType::i32);
}

Expected<QkvProjection> Transformer::project_qkv(int layer, const Tensor& hidden, const Tensor& positions) const {
  return project(layer, hidden, positions, nullptr);
}

Expected<QkvProjection> Transformer::project_qkv(int layer, const Tensor& hidden, const Tensor& positions,
                                                 KvCache& store) const {
  return project(layer, hidden, positions, &store);
}

Expected<QkvProjection> Transformer::project(int layer, const Tensor& hidden, const Tensor& positions,
                                             KvCache* store) const {
  const LayerWeights& w = layers_.at(size_t(layer));
  const int64_t n = hidden.dim(0), d = config_.head_dim;
  const int64_t hq = config_.num_attention_heads, hkv = config_.num_key_value_heads;
  if (positions.rank() != 1 || positions.dim(0) != n)
    return make_error("project_qkv: ", to_string(positions.shape()), " positions for ", n, " tokens");
  const DType act = backend_->activation_dtype();
  SM_ASSIGN(normed, backend_->scratch(act, {n, config_.hidden_size}));
  SM_TRY(backend_->rms_norm(hidden, w.attn_norm, config_.rms_norm_eps, normed));
  QkvProjection out;
  if (n == 1) {
    // One token: one GEMM over the stacked weights; q, k, v are consecutive in its row.
    SM_ASSIGN(qkv, backend_->scratch(act, {1, (hq + 2 * hkv) * d}));
    SM_TRY(backend_->matmul(normed, w.wqkv, qkv));
    const Tensor heads = qkv.reshape({hq + 2 * hkv, d});
    out.q = heads.rows(0, hq).reshape({1, hq, d});
    out.k = heads.rows(hq, hq + hkv).reshape({1, hkv, d});
    out.v = heads.rows(hq + hkv, hq + 2 * hkv).reshape({1, hkv, d});
  } else {
    SM_ASSIGN(q, backend_->scratch(act, {n, hq * d}));
    SM_ASSIGN(k, backend_->scratch(act, {n, hkv * d}));
    SM_ASSIGN(v, backend_->scratch(act, {n, hkv * d}));
    SM_TRY(backend_->matmul(normed, w.wq, q));
    SM_TRY(backend_->matmul(normed, w.wk, k));
    SM_TRY(backend_->matmul(normed, w.wv, v));
    out.q = q.reshape({n, hq, d});
    out.k = k.reshape({n, hkv, d});
    out.v = v.reshape({n, hkv, d});
  }
  if (!store) {
    SM_TRY(backend_->rope(out.q, positions, inv_freq_));
    SM_TRY(backend_->rope(out.k, positions, inv_freq_));
    return out;
  }
  SM_ASSIGN(rows, store->new_rows(layer, n));
  SM_TRY(backend_->rope_store_kv(out.q, out.k, out.v, positions, inv_freq_, rows.keys, rows.values));
  return out;
}

Status Transformer::finish_layer(int layer, const Tensor& hidden, const Tensor& attn) const {
  const LayerWeights& w = layers_.at(size_t(layer));
  const int64_t n = hidden.dim(0), h = config_.hidden_size, ffn = config_.intermediate_size;
  const DType act = backend_->activation_dtype();
  SM_ASSIGN(proj, backend_->scratch(act, {n, h}));
  SM_TRY(backend_->matmul(attn.reshape({n, attn.numel() / std::max<int64_t>(n, 1)}), w.wo, proj));
  SM_ASSIGN(normed, backend_->scratch(act, {n, h}));
  SM_TRY(backend_->add_rms_norm(hidden, proj, w.mlp_norm, config_.rms_norm_eps, normed));
  SM_ASSIGN(act_ffn, backend_->scratch(act, {n, ffn}));
  SM_TRY(backend_->gate_up_swiglu(normed, w.w_gate_up, act_ffn));
  return backend_->matmul_add(act_ffn, w.w_down, hidden);
}

Expected<Tensor> Transformer::logits(const Tensor& hidden) const {
  const int64_t n = hidden.dim(0);
  const DType act = backend_->activation_dtype();
  SM_ASSIGN(normed, backend_->scratch(act, {n, config_.hidden_size}));
  SM_TRY(backend_->rms_norm(hidden, final_norm_, config_.rms_norm_eps, normed));
  // Logits in f32 on every backend: sampling and comparisons want the full precision.
  SM_ASSIGN(out, backend_->scratch(DType::f32, {n, config_.vocab_size}));
  SM_TRY(backend_->matmul(normed, lm_head_, out));
  return out;
}

Expected<KvCache> Transformer::make_cache(int64_t capacity, KvMemory memory) const {
  const KvPaging* paging = memory == KvMemory::booked && paging_.arena ? &paging_ : nullptr;
  return KvCache::create(*backend_, config_.num_hidden_layers, capacity, config_.num_key_value_heads, config_.head_dim,
                         paging);
}

int64_t Transformer::kv_row_bytes() const {
  return config_.num_key_value_heads * config_.head_dim * int64_t(dtype_size(backend_->activation_dtype()));
}

Expected<Tensor> Transformer::run_layers(std::span<const int32_t> ids, KvCache& cache, int64_t keep) const {
  const int64_t n = int64_t(ids.size()), past = cache.length();
  if (n == 0) return make_error("forward: no tokens");
  if (past + n > cache.capacity())
    return make_error("sequence of ", past + n, " tokens exceeds the KV cache capacity of ", cache.capacity());
  std::vector<int32_t> position_ids(static_cast<size_t>(n));
  std::iota(position_ids.begin(), position_ids.end(), int32_t(past));
  SM_ASSIGN(pos, positions(position_ids));
  SM_ASSIGN(hidden, embed(ids));
  const int64_t hq = config_.num_attention_heads, d = config_.head_dim;
  SM_ASSIGN(attn, backend_->scratch(backend_->activation_dtype(), {n, hq, d}));
  SM_ASSIGN(lse, backend_->scratch(DType::f32, {n, hq}));
  for (int l = 0; l < layers(); ++l) {
    SM_ASSIGN(qkv, project_qkv(l, hidden, pos, cache));
    // The last layer's outputs feed only the rows kept: its attention and MLP run for them
    // alone (a prefill of n tokens for one row's logits saves 1 / layers of its attention).
    const int64_t r0 = l == layers() - 1 ? n - keep : 0;
    if (r0 == n) break;  // KV only
    SM_TRY(backend_->attention(qkv.q.rows(r0, n), cache.keys(l, n), cache.values(l, n),
                               AttentionMask::causal_from(past + r0), scale_, attn.rows(r0, n), lse.rows(r0, n)));
    SM_TRY(finish_layer(l, hidden.rows(r0, n), attn.rows(r0, n)));
  }
  SM_TRY(cache.commit(n));
  return hidden.rows(n - keep, n);
}

Expected<Tensor> Transformer::forward(std::span<const int32_t> ids, KvCache& cache, bool all_rows) const {
  SM_ASSIGN(hidden, run_layers(ids, cache, all_rows ? int64_t(ids.size()) : 1));
  return logits(hidden);
}

Status Transformer::append_kv(std::span<const int32_t> ids, KvCache& cache) const {
  return run_layers(ids, cache, 0).status();
}

}  // namespace starmesh
