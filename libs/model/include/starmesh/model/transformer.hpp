#pragma once
// The Llama-family decoder, written once against backend_i. Engines drive it layer by layer:
// embed -> for each layer (project_qkv, attention of their choosing, finish_layer) -> logits.
// forward() is the plain global-attention engine over a KvCache.
#include <filesystem>
#include <span>
#include <vector>

#include "starmesh/backend/backend.hpp"
#include "starmesh/core/progress.hpp"
#include "starmesh/model/kv_cache.hpp"
#include "starmesh/model/llama_config.hpp"

namespace starmesh {

struct LayerWeights {
  Tensor attn_norm;             // [hidden]
  Tensor wq, wk, wv, wo;        // [hq*d, hidden], [hkv*d, hidden], [hkv*d, hidden], [hidden, hq*d]
  Tensor mlp_norm;              // [hidden]
  Tensor w_gate, w_up, w_down;  // [ffn, hidden], [ffn, hidden], [hidden, ffn]
  // wq, wk, wv and w_gate, w_up are row ranges of these (one copy in memory).
  Tensor wqkv;       // [(hq + 2 hkv) d, hidden]
  Tensor w_gate_up;  // [2 ffn, hidden]
};

// Q after RoPE [n, hq, d]; K after RoPE and V [n, hkv, d]; activation dtype.
struct QkvProjection {
  Tensor q, k, v;
};

class Transformer {
 public:
  // Reads config.json and the safetensors checkpoint in `dir`; weights go to `backend`.
  // `on_layer` (if set) hears of each layer loaded (done of config().num_hidden_layers).
  static Expected<Transformer> load(backend_i& backend, const std::filesystem::path& dir,
                                    const ProgressFn& on_layer = {});

  const LlamaConfig& config() const { return config_; }
  backend_i& backend() const { return *backend_; }
  int layers() const { return int(layers_.size()); }
  float attention_scale() const { return scale_; }

  // Token ids -> hidden states [n, hidden]. An id outside the vocabulary is an error.
  Expected<Tensor> embed(std::span<const int32_t> ids) const;
  // Position ids on the backend (i32 [n]): made once per pass, used by every layer.
  Expected<Tensor> positions(std::span<const int32_t> ids) const;
  // RMSNorm + Q/K/V projections + RoPE at `positions` (i32 [n] on the backend, one per row).
  Expected<QkvProjection> project_qkv(int layer, const Tensor& hidden, const Tensor& positions) const;
  // The same, with k and v also written to `store`'s next rows of the layer (KvCache::write),
  // fused with RoPE where the backend can.
  Expected<QkvProjection> project_qkv(int layer, const Tensor& hidden, const Tensor& positions, KvCache& store) const;
  // hidden += o_proj(attn); hidden += mlp(rms_norm(hidden)). attn [n, hq, d].
  Status finish_layer(int layer, const Tensor& hidden, const Tensor& attn) const;
  // Final norm + LM head over every row of hidden: f32 [n, vocab].
  Expected<Tensor> logits(const Tensor& hidden) const;

  // Global attention over `cache` (+ the new tokens, causal): appends their KV and returns
  // logits for every new token (all_rows) or the last one only ([1, vocab]).
  Expected<Tensor> forward(std::span<const int32_t> ids, KvCache& cache, bool all_rows = false) const;
  // The same without logits: only appends the tokens' KV (a prefill whose outputs nobody
  // reads, as phase 1's anchor), so the last layer stops after its projections.
  Status append_kv(std::span<const int32_t> ids, KvCache& cache) const;

  // A cache shaped for this model: in the pages of set_kv_paging's arena when set (booked KV:
  // shards, query tokens), else allocated whole (and `working` memory always is: phase 1's
  // anchor, gone when its phase 1 ends).
  enum class KvMemory : uint8_t { booked, working };
  Expected<KvCache> make_cache(int64_t capacity, KvMemory memory = KvMemory::booked) const;
  // Every booked cache made from now on takes pages of `paging.arena` (a worker sets it
  // once, before serving).
  void set_kv_paging(KvPaging paging) { paging_ = std::move(paging); }
  const KvPaging& kv_paging() const { return paging_; }
  // Bytes of one token of one layer's keys (or values) in the activation dtype.
  int64_t kv_row_bytes() const;

 private:
  // Every layer over ids, appending their KV; returns the hidden states of the last `keep`
  // rows (the others stop being computed at the last layer; 0: KV only).
  Expected<Tensor> run_layers(std::span<const int32_t> ids, KvCache& cache, int64_t keep) const;
  // project_qkv, storing k and v in `store` when given.
  Expected<QkvProjection> project(int layer, const Tensor& hidden, const Tensor& positions, KvCache* store) const;
  backend_i* backend_ = nullptr;
  LlamaConfig config_;
  float scale_ = 1.0f;
  Tensor embed_, final_norm_, lm_head_;  // [vocab, hidden], [hidden], [vocab, hidden]
  Tensor inv_freq_;                      // f32 [d/2], llama3 scaling applied
  std::vector<LayerWeights> layers_;
  KvPaging paging_;  // arena null: caches are plain allocations
};

}  // namespace starmesh
