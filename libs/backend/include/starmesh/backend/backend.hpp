#pragma once
// backend_i: every op the transformer and the Star Attention engine need, on one device.
// The CPU backend is the reference; the CUDA backend must agree with it (tests/backend).
// Tensors passed to an op live on the backend's device; outputs are written in place
// (a Tensor is a handle, so `const Tensor& out` still lets the op write its elements).
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "starmesh/backend/page_arena.hpp"
#include "starmesh/backend/sampling.hpp"
#include "starmesh/core/expected.hpp"
#include "starmesh/core/tensor.hpp"

namespace starmesh {

// Which keys a query sees: key j is visible to query i iff !causal || j <= i + diagonal.
// diagonal = nk - nq aligns the last query with the last key (a query appended to a cache).
struct AttentionMask {
  bool causal = false;
  int64_t diagonal = 0;
  static AttentionMask none() { return {}; }
  static AttentionMask causal_from(int64_t diagonal) { return {true, diagonal}; }
};

class backend_i {
 public:
  virtual ~backend_i() = default;
  virtual std::string name() const = 0;
  virtual Device device() const = 0;
  // The dtype activations and the KV cache use on this backend.
  virtual DType activation_dtype() const = 0;

  // Memory. alloc returns zero-filled storage; upload copies a host tensor to the device
  // in `as` dtype (weights: the backend's compute form); download returns a host copy.
  virtual Expected<Tensor> alloc(DType t, const Shape& shape) = 0;
  // Storage for an op's output that the op overwrites whole: its contents are undefined (the
  // CUDA backend skips the fill, a launch per tensor; the CPU backend zero-fills anyway).
  virtual Expected<Tensor> scratch(DType t, const Shape& shape) { return alloc(t, shape); }
  virtual Expected<Tensor> upload(const Tensor& host, DType as) = 0;
  virtual Expected<Tensor> download(const Tensor& t) = 0;
  // Device memory in `pages` pages of `page_bytes` (a multiple of page_granularity()) for KV
  // caches (page_arena.hpp); a map short of pages waits up to `wait`. Backends without one
  // say so (`refused`), and their caches are allocated whole.
  virtual Expected<std::shared_ptr<page_arena_i>> make_page_arena(int64_t page_bytes, int64_t pages,
                                                                  std::chrono::milliseconds wait);
  virtual int64_t page_granularity() const { return 0; }
  // dst = src; same dtype and element count, both on this device.
  virtual Status copy(const Tensor& src, const Tensor& dst) = 0;

  // out[n, d] = table[ids[n], :]. ids i32 [n] (host or device), table [V, d].
  virtual Status embedding(const Tensor& ids, const Tensor& table, const Tensor& out) = 0;
  // out[n, d] = x / sqrt(mean(x^2) + eps) * w. x [n, d], w [d].
  virtual Status rms_norm(const Tensor& x, const Tensor& w, float eps, const Tensor& out) = 0;
  // The residual add and the next norm in one: x += delta, then out = rms_norm(x) * w, as
  // add() then rms_norm() compute it (bit for bit in the activation dtype).
  virtual Status add_rms_norm(const Tensor& x, const Tensor& delta, const Tensor& w, float eps, const Tensor& out) {
    SM_TRY(add(x, delta, x));
    return rms_norm(x, w, eps, out);
  }
  // out[n, m] = x[n, k] * w[m, k]^T (HF Linear layout).
  virtual Status matmul(const Tensor& x, const Tensor& w, const Tensor& out) = 0;
  // In place, HF rotate-half RoPE: x [n, heads, d], positions i32 [n], inv_freq f32 [d/2].
  virtual Status rope(const Tensor& x, const Tensor& positions, const Tensor& inv_freq) = 0;
  // out = silu(gate) * up, all [n, f].
  virtual Status swiglu(const Tensor& gate, const Tensor& up, const Tensor& out) = 0;
  // out = a + b, same shapes (out may alias a).
  virtual Status add(const Tensor& a, const Tensor& b, const Tensor& out) = 0;

  // Fused forms of the ops above, for a decode step's few rows: by default the ops one after
  // another (fused_ops.cpp); a backend that fuses them saves launches and a rounding.
  // RoPE on q [n, hq, d] and k [n, hkv, d] in place, then k_dst = k and v_dst = v (a KV
  // cache's new rows, [n, hkv, d]).
  virtual Status rope_store_kv(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& positions,
                               const Tensor& inv_freq, const Tensor& k_dst, const Tensor& v_dst);
  // out[n, f] = silu(x w_gate^T) * (x w_up^T), the two stacked in w [2f, k] (gate rows first).
  virtual Status gate_up_swiglu(const Tensor& x, const Tensor& w, const Tensor& out);
  // out[n, m] += x[n, k] * w[m, k]^T: a projection added to the residual stream.
  virtual Status matmul_add(const Tensor& x, const Tensor& w, const Tensor& out);
  // Attention with its log-sum-exp. q [nq, hq, d], k and v [nk, hkv, d] (hq % hkv == 0),
  // o [nq, hq, d], lse f32 [nq, hq] (natural log of the sum of exp(scale * q.k) over the
  // visible keys; -inf and o = 0 for a query that sees no key).
  virtual Status attention(const Tensor& q, const Tensor& k, const Tensor& v, AttentionMask mask, float scale,
                           const Tensor& o, const Tensor& lse) = 0;
  // The exact merge of partial attention states (Star Attention phase 2), per row and head:
  // lse = log sum_i exp(lse_i), o = sum_i exp(lse_i - lse) o_i. Part i: o_parts[i]
  // [n, heads, d] in the activation dtype or f32, lse_parts[i] f32 [n, heads]. Out: o
  // [n, heads, d] (activation dtype or f32), lse f32 [n, heads]; neither may alias a part.
  virtual Status merge_states(std::span<const Tensor> o_parts, std::span<const Tensor> lse_parts, const Tensor& o,
                              const Tensor& lse) = 0;
  // Attention of q over the keys of several segments, no mask (every key visible): what
  // attention over their concatenation gives. keys[i], values[i] [nk_i, hkv, d]. Star's phase
  // 2 on one device asks every shard and the local tokens at once. By default each segment's
  // state, then their merge; a backend may do it in one pass.
  virtual Status attention_segments(const Tensor& q, std::span<const Tensor> keys, std::span<const Tensor> values,
                                    float scale, const Tensor& o, const Tensor& lse);

  // Ops over a batch of requests' decode steps (one row each), by default one call a row
  // (batch_ops.cpp); a backend that batches them saves a launch a request.
  // Row i of src [n, ...] into dst[i] (one row's elements, same dtype): each request's new KV
  // row into its own cache.
  virtual Status scatter_rows(const Tensor& src, std::span<const Tensor> dst);
  // Row i of q [n, hq, d] over items[i]'s segments, as attention_segments gives that row alone,
  // into row i of o [n, hq, d] and lse [n, hq].
  struct SegmentList {
    std::span<const Tensor> keys, values;
  };
  virtual Status attention_batch(const Tensor& q, std::span<const SegmentList> items, float scale, const Tensor& o,
                                 const Tensor& lse);

  // The next token from f32 logits [vocab] or [rows, vocab] (the last row), by the rule of
  // sampling.hpp; only the token id leaves the device.
  virtual Expected<int32_t> sample(const Tensor& logits, const SampleSpec& spec) = 0;
  // One token per draw: row draws[i].row of logits [rows, vocab] by its rule, the token
  // sample() gives for that row alone, with one wait for them all (a decode batch's leader
  // draws every request's token). By default one sample() a draw (batch_ops.cpp).
  virtual Expected<std::vector<int32_t>> sample_rows(const Tensor& logits, std::span<const RowSample> draws);

  // Waits for all queued work (a no-op on the CPU).
  virtual Status synchronize() = 0;
  // The most device memory this backend's allocations held at once so far, in bytes (0 where
  // it is not measured: the CPU).
  virtual int64_t peak_memory_bytes() const { return 0; }
  // Memory a new allocation could take now, in bytes: the GPU's free memory, or the host's
  // available memory for the CPU (none where it cannot be known). A worker checks its KV
  // capacity against it at start (check_kv_fits), so an over-large --capacity is refused
  // there, not met as an out-of-memory error in some request's phase 1.
  virtual std::optional<int64_t> free_memory_bytes() const { return std::nullopt; }
};

// The shape and dtype checks of backend_i::attention, shared by every backend: q, k, v, o
// in `act` ([nq, hq, d], [nk, hkv, d], [nk, hkv, d], [nq, hq, d]), lse f32 [nq, hq].
Status check_attention_args(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o, const Tensor& lse,
                            DType act);

// The checks of backend_i::merge_states, shared by every backend: at least one part, as many
// o parts as lse parts, every o (parts and out) [n, heads, d] in `act` or f32, every lse f32
// [n, heads].
Status check_merge_args(std::span<const Tensor> o_parts, std::span<const Tensor> lse_parts, const Tensor& o,
                        const Tensor& lse, DType act);

// The checks of backend_i::sample, shared by every backend: f32 logits with at least one
// element, on `dev`; a valid spec. Returns the vocabulary size (the last dimension).
Expected<int64_t> check_sample_args(const Tensor& logits, const SampleSpec& spec, Device dev);
// The checks of backend_i::sample_rows: logits [rows, vocab] as above, every draw's row in
// range and its rule valid. Returns the vocabulary size.
Expected<int64_t> check_sample_rows_args(const Tensor& logits, std::span<const RowSample> draws, Device dev);

}  // namespace starmesh
