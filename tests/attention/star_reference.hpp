#pragma once
// An independent float64 reference of Star Attention (shared/STAR_ATTENTION.md) for tests:
// a deliberately naive, plain-loops Llama forward that shares no code with the engine (it
// reads the checkpoint and the config, nothing else), global attention, and Star Attention
// straight from the definition (no hosts: phase 2 is exact over any partition).
//
// Layouts (all row-major, float64):
//   LayerKv::k, LayerKv::v   [tokens, Hkv, d]; k after RoPE
//   Kv                       one LayerKv per layer, indexed by layer
//   logits                   [tokens][vocab]
// Errors (missing tensor, bad shape, bad arguments) throw std::runtime_error: test code only.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numbers>
#include <stdexcept>
#include <string>
#include <vector>

#include "starmesh/model/llama_config.hpp"
#include "starmesh/model/safetensors.hpp"

namespace starmesh::test {

struct NaiveLlama {
  struct Layer {
    std::vector<double> attn_norm;       // [H]
    std::vector<double> wq, wk, wv, wo;  // [Hq*d, H], [Hkv*d, H], [Hkv*d, H], [H, Hq*d]
    std::vector<double> mlp_norm;        // [H]
    std::vector<double> gate, up, down;  // [I, H], [I, H], [H, I]
  };
  LlamaConfig config;
  std::vector<double> embed;  // [V, H]
  std::vector<Layer> layers;
  std::vector<double> final_norm;  // [H]
  std::vector<double> lm_head;     // [V, H]
  std::vector<float> inv_freq;     // [d / 2]

  struct LayerKv {
    std::vector<double> k, v;  // [tokens, Hkv, d]
  };
  using Kv = std::vector<LayerKv>;  // per layer
  struct Result {
    Kv kv;                                    // this sequence's tokens only
    std::vector<std::vector<double>> logits;  // [tokens][V]
  };

  static NaiveLlama load(const std::string& dir);

  // `tokens` sit at `positions`; token t attends to every prefix[layer] entry (all of them,
  // no mask) and to tokens 0..t of this sequence. `prefix` may be empty (no prefix).
  Result run(const std::vector<int32_t>& tokens, const std::vector<int32_t>& positions, const Kv& prefix) const;
};

namespace naive_detail {

[[noreturn]] inline void fail(const std::string& what) { throw std::runtime_error(what); }

inline std::vector<double> weight(const Checkpoint& ckpt, const std::string& name, Shape shape) {
  auto t = ckpt.get(name, shape);
  if (!t) fail(t.error().message);
  std::vector<float> f = t->to_f32_vector();
  return std::vector<double>(f.begin(), f.end());
}

// y[r] = sum_c w[r, c] x[c]; w is [rows, x.size()].
inline std::vector<double> matvec(const std::vector<double>& w, const std::vector<double>& x) {
  const size_t cols = x.size(), rows = w.size() / cols;
  std::vector<double> y(rows, 0.0);
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < cols; ++c) y[r] += w[r * cols + c] * x[c];
  return y;
}

inline std::vector<double> rms_norm(const std::vector<double>& x, const std::vector<double>& w, double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double inv = 1.0 / std::sqrt(ss / double(x.size()) + eps);
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inv * w[i];
  return y;
}

// HF: default rope frequencies, then the llama3 rescaling when configured; float at the end.
inline std::vector<float> inv_freq(const LlamaConfig& c) {
  const int64_t d = c.head_dim;
  std::vector<float> out(size_t(d / 2));
  for (int64_t i = 0; i < d / 2; ++i) {
    double f = 1.0 / std::pow(c.rope_theta, double(2 * i) / double(d));
    if (c.rope_scaling) {
      const auto& s = *c.rope_scaling;
      const double orig = double(s.original_max_position_embeddings);
      const double wavelen = 2.0 * std::numbers::pi / f;
      const double low_wavelen = orig / s.low_freq_factor, high_wavelen = orig / s.high_freq_factor;
      if (wavelen > low_wavelen) {
        f = f / s.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (orig / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = (1.0 - smooth) * f / s.factor + smooth * f;
      }
    }
    out[size_t(i)] = float(f);
  }
  return out;
}

// Rotate-half RoPE, in place, on `heads` vectors of head_dim d at x[h * d ..].
inline void rope(std::vector<double>& x, int64_t heads, int64_t d, int32_t pos, const std::vector<float>& inv_freq) {
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < d / 2; ++i) {
      const float angle = float(pos) * inv_freq[size_t(i)];  // float32, as HF
      const double c = std::cos(double(angle)), s = std::sin(double(angle));
      double& x1 = x[size_t(h * d + i)];
      double& x2 = x[size_t(h * d + i + d / 2)];
      const double a = x1, b = x2;
      x1 = a * c - b * s;
      x2 = b * c + a * s;
    }
}

}  // namespace naive_detail

inline NaiveLlama NaiveLlama::load(const std::string& dir) {
  using naive_detail::weight;
  auto cfg = load_llama_config(dir);
  if (!cfg) naive_detail::fail(cfg.error().message);
  auto ckpt = Checkpoint::open(dir);
  if (!ckpt) naive_detail::fail(ckpt.error().message);
  NaiveLlama m;
  m.config = *cfg;
  const LlamaConfig& c = m.config;
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size, d = c.head_dim;
  const int64_t q_out = c.num_attention_heads * d, kv_out = c.num_key_value_heads * d;
  m.embed = weight(*ckpt, "model.embed_tokens.weight", {V, H});
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    Layer L;
    L.attn_norm = weight(*ckpt, p + "input_layernorm.weight", {H});
    L.wq = weight(*ckpt, p + "self_attn.q_proj.weight", {q_out, H});
    L.wk = weight(*ckpt, p + "self_attn.k_proj.weight", {kv_out, H});
    L.wv = weight(*ckpt, p + "self_attn.v_proj.weight", {kv_out, H});
    L.wo = weight(*ckpt, p + "self_attn.o_proj.weight", {H, q_out});
    L.mlp_norm = weight(*ckpt, p + "post_attention_layernorm.weight", {H});
    L.gate = weight(*ckpt, p + "mlp.gate_proj.weight", {I, H});
    L.up = weight(*ckpt, p + "mlp.up_proj.weight", {I, H});
    L.down = weight(*ckpt, p + "mlp.down_proj.weight", {H, I});
    m.layers.push_back(std::move(L));
  }
  m.final_norm = weight(*ckpt, "model.norm.weight", {H});
  m.lm_head = c.tie_word_embeddings ? m.embed : weight(*ckpt, "lm_head.weight", {V, H});
  m.inv_freq = naive_detail::inv_freq(c);
  return m;
}

inline NaiveLlama::Result NaiveLlama::run(const std::vector<int32_t>& tokens, const std::vector<int32_t>& positions,
                                          const Kv& prefix) const {
  using namespace naive_detail;
  const LlamaConfig& c = config;
  const int64_t n = int64_t(tokens.size()), H = c.hidden_size, d = c.head_dim;
  const int64_t hq = c.num_attention_heads, hkv = c.num_key_value_heads, group = hq / hkv;
  const double scale = 1.0 / std::sqrt(double(d));
  if (positions.size() != tokens.size()) fail("run: tokens and positions differ in length");
  if (!prefix.empty() && prefix.size() != layers.size()) fail("run: prefix must have one entry per layer");

  std::vector<std::vector<double>> x(static_cast<size_t>(n));  // [n][H] residual stream
  for (int64_t t = 0; t < n; ++t) {
    const int32_t id = tokens[size_t(t)];
    if (id < 0 || id >= c.vocab_size) fail("run: token id out of range: " + std::to_string(id));
    x[size_t(t)].assign(embed.begin() + id * H, embed.begin() + (id + 1) * H);
  }

  Result res;
  for (size_t l = 0; l < layers.size(); ++l) {
    const Layer& L = layers[l];
    // Keys and values visible to this sequence: prefix first, then this sequence's own.
    LayerKv all = prefix.empty() ? LayerKv{} : prefix[l];
    const int64_t np = int64_t(all.k.size()) / (hkv * d);
    std::vector<std::vector<double>> q(static_cast<size_t>(n));
    LayerKv own;
    for (int64_t t = 0; t < n; ++t) {
      const auto h = rms_norm(x[size_t(t)], L.attn_norm, c.rms_norm_eps);
      q[size_t(t)] = matvec(L.wq, h);
      auto k = matvec(L.wk, h);
      const auto v = matvec(L.wv, h);
      rope(q[size_t(t)], hq, d, positions[size_t(t)], inv_freq);
      rope(k, hkv, d, positions[size_t(t)], inv_freq);
      own.k.insert(own.k.end(), k.begin(), k.end());
      own.v.insert(own.v.end(), v.begin(), v.end());
    }
    all.k.insert(all.k.end(), own.k.begin(), own.k.end());
    all.v.insert(all.v.end(), own.v.begin(), own.v.end());

    for (int64_t t = 0; t < n; ++t) {
      const int64_t visible = np + t + 1;  // all prefix keys, own keys 0..t
      std::vector<double> attn(size_t(hq * d), 0.0);
      for (int64_t h = 0; h < hq; ++h) {
        const int64_t g = h / group;
        std::vector<double> s(static_cast<size_t>(visible));
        double mx = -INFINITY;
        for (int64_t j = 0; j < visible; ++j) {
          double dot = 0;
          for (int64_t e = 0; e < d; ++e) dot += q[size_t(t)][size_t(h * d + e)] * all.k[size_t((j * hkv + g) * d + e)];
          s[size_t(j)] = dot * scale;
          mx = std::max(mx, s[size_t(j)]);
        }
        double sum = 0;
        for (double& e : s) sum += (e = std::exp(e - mx));
        for (int64_t j = 0; j < visible; ++j)
          for (int64_t e = 0; e < d; ++e)
            attn[size_t(h * d + e)] += s[size_t(j)] / sum * all.v[size_t((j * hkv + g) * d + e)];
      }
      const auto o = matvec(L.wo, attn);
      for (int64_t i = 0; i < H; ++i) x[size_t(t)][size_t(i)] += o[size_t(i)];
    }

    for (int64_t t = 0; t < n; ++t) {
      const auto h = rms_norm(x[size_t(t)], L.mlp_norm, c.rms_norm_eps);
      auto g = matvec(L.gate, h);
      const auto u = matvec(L.up, h);
      for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
      const auto y = matvec(L.down, g);
      for (int64_t i = 0; i < H; ++i) x[size_t(t)][size_t(i)] += y[size_t(i)];
    }
    res.kv.push_back(std::move(own));
  }

  for (int64_t t = 0; t < n; ++t)
    res.logits.push_back(matvec(lm_head, rms_norm(x[size_t(t)], final_norm, c.rms_norm_eps)));
  return res;
}

// Global attention: logits of each query token, the sequence being context ++ query at
// positions 0.. (causal). [query tokens][V].
inline std::vector<std::vector<double>> global_reference_logits(const NaiveLlama& m,
                                                                const std::vector<int32_t>& context,
                                                                const std::vector<int32_t>& query) {
  std::vector<int32_t> ids = context;
  ids.insert(ids.end(), query.begin(), query.end());
  std::vector<int32_t> pos(ids.size());
  for (size_t i = 0; i < pos.size(); ++i) pos[i] = int32_t(i);
  auto logits = m.run(ids, pos, {}).logits;
  return {logits.begin() + std::ptrdiff_t(context.size()), logits.end()};
}

// Star Attention from the definition: context blocks of `block_size` (the last may be
// shorter); block 1 encoded plainly; every other block as [anchor ; block] with the anchor
// (first `anchor_size` context tokens) at positions 0..a-1 and the block at its global
// positions, or alone at its global positions when !use_anchor. Only the blocks' KV is kept.
// The query (positions ctx_len + i) then attends to all kept KV and causally to itself.
// Returns [query tokens][V].
inline std::vector<std::vector<double>> star_reference_logits(const NaiveLlama& m, const std::vector<int32_t>& context,
                                                              const std::vector<int32_t>& query, int block_size,
                                                              int anchor_size, bool use_anchor) {
  if (block_size <= 0 || anchor_size < 0) naive_detail::fail("star: block_size must be > 0, anchor_size >= 0");
  const size_t n = context.size();
  const size_t a = std::min(size_t(anchor_size), n);
  const int64_t per_token = m.config.num_key_value_heads * m.config.head_dim;
  NaiveLlama::Kv kept(m.layers.size());
  for (size_t begin = 0; begin < n; begin += size_t(block_size)) {
    const size_t end = std::min(n, begin + size_t(block_size));
    std::vector<int32_t> ids, pos;
    size_t skip = 0;  // leading tokens (the anchor) whose KV is dropped
    if (begin > 0 && use_anchor) {
      for (size_t i = 0; i < a; ++i) {
        ids.push_back(context[i]);
        pos.push_back(int32_t(i));
      }
      skip = a;
    }
    for (size_t i = begin; i < end; ++i) {
      ids.push_back(context[i]);
      pos.push_back(int32_t(i));
    }
    const auto r = m.run(ids, pos, {});
    for (size_t l = 0; l < kept.size(); ++l) {
      const auto off = std::ptrdiff_t(skip * size_t(per_token));
      kept[l].k.insert(kept[l].k.end(), r.kv[l].k.begin() + off, r.kv[l].k.end());
      kept[l].v.insert(kept[l].v.end(), r.kv[l].v.begin() + off, r.kv[l].v.end());
    }
  }
  std::vector<int32_t> qpos(query.size());
  for (size_t i = 0; i < qpos.size(); ++i) qpos[i] = int32_t(n + i);
  return m.run(query, qpos, kept).logits;
}

}  // namespace starmesh::test
