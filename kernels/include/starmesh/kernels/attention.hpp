#pragma once
// Attention kernels with log-sum-exp (bf16 in, f32 accumulate), for Hopper (sm_90a).
// Raw pointers and a stream; no framework types. Shapes (row-major, contiguous):
//   q   bf16 [nq, hq, d]       k, v bf16 [nk, hkv, d]      (hq % hkv == 0)
//   o   bf16 [nq, hq, d]       lse  f32  [nq, hq] (natural log; -inf and o = 0 when a
//                                                   query sees no key)
// Key j is visible to query i iff !causal || j <= i + diagonal.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace starmesh::kernels {

struct AttentionArgs {
  const void* q = nullptr;  // bf16 [nq, hq, d]
  const void* k = nullptr;  // bf16 [nk, hkv, d]
  const void* v = nullptr;  // bf16 [nk, hkv, d]
  void* o = nullptr;        // bf16 [nq, hq, d]
  float* lse = nullptr;     // f32 [nq, hq]
  int nq = 0, nk = 0, hq = 0, hkv = 0, d = 0;
  bool causal = false;
  int64_t diagonal = 0;
  float scale = 1.0f;
};

// How the work is cut: query rows per tile, whether the q heads of one kv head share a tile
// (few queries: every K/V byte is read once for the whole group), and the split of the keys
// across CTAs (split-KV; partials merged by a second kernel).
struct AttentionPlan {
  bool pack_heads = false;
  int splits = 1;
  int keys_per_split = 0;
  bool skip_idle_warps = false;     // fewer rows than a tile: idle warps skip the math
  bool use_wgmma = false;           // Hopper warpgroup-MMA prefill kernel (no split, no packing)
  bool wgmma_pingpong = false;      // its two consumer warpgroups alternate on the tensor cores
  bool wgmma_overlap = false;       // each keeps S of tile t and P V of tile t-1 in flight together
  bool wgmma_group_order = false;   // the q heads of one kv head run side by side (K/V in L2 once)
  bool wgmma_lazy_rescale = false;  // skip the output rescale where no row max moved
  bool use_wgmma_partial = false;   // Hopper split-KV wgmma kernel for 17-64 rows (else mma.sync)
  bool use_decode = false;          // up to 16 rows: every warp of a CTA computes, on its own keys
  int decode_stages = 3;            // its K/V tiles in flight (2 or 3)
  size_t workspace_bytes = 0;       // f32 partial (o, lse) when splits > 1
};

// Chooses the plan for `num_sms` multiprocessors; `hopper`: compute capability 9.0, where the
// wgmma kernel runs.
AttentionPlan plan_attention(const AttentionArgs& a, int num_sms, bool hopper);

// Runs the plan. workspace: at least plan.workspace_bytes of device memory (or null when 0).
// Returns cudaErrorNotSupported for a head dim other than 64 or 128, cudaErrorInvalidValue
// for inconsistent shapes, else the launch status.
cudaError_t attention_forward(const AttentionArgs& a, const AttentionPlan& plan, void* workspace, cudaStream_t stream);

// Attention over keys held in several places, no mask: what attention over their
// concatenation gives (Star Attention's phase 2 on one device: every host's shard and the
// local tokens, one launch and one merge a layer). Up to kMaxAttentionSegments segments and
// 16 query rows after packing (a decode step); plan.supported is false otherwise (run each
// segment and merge the states instead). a.k, a.v, a.nk, a.causal are ignored.
constexpr int kMaxAttentionSegments = 8;
struct AttentionSegment {
  const void* k = nullptr;  // bf16 [nk, hkv, d]
  const void* v = nullptr;
  int nk = 0;
};
struct SegmentsPlan {
  bool supported = false;
  int keys_per_split = 0;
  int first_split[kMaxAttentionSegments + 1] = {};  // segment s owns splits [first_split[s], first_split[s + 1])
  int stages = 3;
  size_t workspace_bytes = 0;  // f32 partials of every split
};
SegmentsPlan plan_attention_segments(const AttentionArgs& a, const AttentionSegment* segments, int count, int num_sms);
cudaError_t attention_segments_forward(const AttentionArgs& a, const AttentionSegment* segments, int count,
                                       const SegmentsPlan& plan, void* workspace, cudaStream_t stream);

// Many decode queries at once (a batch of requests' phase-2 steps), each over its own
// segments: row i of a.q [a.nq = n, hq, d] attends to items[i]'s keys, no mask; o and lse as
// above. Item i's plan is plan_attention_segments' for that item alone (nq = 1, supported),
// so its row equals what attention_segments_forward gives it alone, bit for bit. One launch
// per kBatchItemsPerLaunch items, one merge for all.
constexpr int kBatchItemsPerLaunch = 16;
struct AttentionBatchItem {
  const AttentionSegment* segments = nullptr;
  int count = 0;
  SegmentsPlan plan;
};
// The f32 partials of every item's splits (null-safe: 0 when an argument is off).
size_t attention_batch_workspace_bytes(const AttentionArgs& a, const AttentionBatchItem* items, int n);
cudaError_t attention_batch_forward(const AttentionArgs& a, const AttentionBatchItem* items, int n, void* workspace,
                                    cudaStream_t stream);

// Merges n partial states per (row, head): o_parts f32 [n, rows, heads, d], lse_parts f32
// [n, rows, heads] -> o (bf16 or f32, as o_is_f32 says) [rows, heads, d], lse f32 [rows, heads].
cudaError_t merge_attention_states(const float* o_parts, const float* lse_parts, int n, int rows, int heads, int d,
                                   void* o, bool o_is_f32, float* lse, cudaStream_t stream);

// The same merge over states held apart (phase 2: each host's partial where it landed).
// Part i: o [rows, heads, d] in bf16 or f32, lse f32 [rows, heads]. At most kMaxMergeParts
// per launch (the list travels as a kernel argument); the output must not alias a part.
constexpr int kMaxMergeParts = 32;
struct MergePart {
  const void* o = nullptr;
  const float* lse = nullptr;
  bool o_is_f32 = false;
};
struct MergePartList {
  MergePart part[kMaxMergeParts];
  int n = 0;
};
cudaError_t merge_attention_list(const MergePartList& parts, int rows, int heads, int d, void* o, bool o_is_f32,
                                 float* lse, cudaStream_t stream);

}  // namespace starmesh::kernels
