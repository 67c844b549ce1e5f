// Attention over keys in several segments (attention.hpp): the decode kernel walks a table of
// segments, each cut into splits of one size, and one merge combines every split's partial.
#include <algorithm>

#include "attention_decode.cuh"
#include "starmesh/kernels/attention.hpp"

namespace starmesh::kernels {

static_assert(kMaxAttentionSegments == kMaxKeySegments, "the public bound is the kernel table's");
static_assert(kBatchItemsPerLaunch == kBatchTableItems, "the public batch bound is the kernel table's");

SegmentsPlan plan_attention_segments(const AttentionArgs& a, const AttentionSegment* segments, int count, int num_sms) {
  SegmentsPlan p;
  if (a.hkv <= 0 || a.hq % a.hkv || count < 1 || count > kMaxAttentionSegments || (a.d != 64 && a.d != 128)) return p;
  const int group = a.hq / a.hkv;
  if (int64_t(a.nq) * group > kDecodeMaxRows) return p;  // packed rows of one kv head: one tile
  int64_t total = 0;
  for (int s = 0; s < count; ++s) total += std::max(segments[s].nk, 0);
  // As the one-range plan: about two CTAs per SM over the kv heads, splits of whole 64-key
  // tiles and at least 256 keys; a segment shorter than a split takes one of its own.
  const int64_t target = std::max<int64_t>(1, int64_t(2) * std::max(num_sms, 1) / a.hkv);
  const int64_t per = std::max<int64_t>(256, (total + target - 1) / target);
  p.keys_per_split = int((per + 63) / 64 * 64);
  for (int s = 0; s < count; ++s) {
    const int nk = std::max(segments[s].nk, 0);
    p.first_split[s + 1] = p.first_split[s] + (nk + p.keys_per_split - 1) / p.keys_per_split;
  }
  if (p.first_split[count] == 0)  // no key anywhere: one empty split (o = 0, lse = -inf)
    for (int s = 1; s <= count; ++s) p.first_split[s] = 1;
  const int splits = p.first_split[count];
  p.workspace_bytes = size_t(splits) * a.nq * a.hq * (size_t(a.d) + 1) * sizeof(float);
  p.supported = true;
  return p;
}

namespace {

// The decode kernel's arguments: q heads packed by kv head, f32 partials out.
KernelArgs partial_args(const AttentionArgs& a, int keys_per_split, float* o_parts, float* lse_parts) {
  KernelArgs ka{};
  ka.q = static_cast<const __nv_bfloat16*>(a.q);
  ka.nq = a.nq;
  ka.hq = a.hq;
  ka.hkv = a.hkv;
  ka.group = a.hq / a.hkv;
  ka.pack_heads = true;
  ka.rows = a.nq * ka.group;
  ka.scale_log2 = a.scale * 1.4426950408889634f;
  ka.keys_per_split = keys_per_split;
  ka.partial = true;
  ka.o = o_parts;
  ka.lse = lse_parts;
  return ka;
}

// Segment s of `segments` into slot s of a kernel table.
template <class Table>
void fill_segments(Table& t, const AttentionSegment* segments, int count, const SegmentsPlan& plan) {
  t.count = count;
  for (int s = 0; s < count; ++s) {
    t.k[s] = static_cast<const __nv_bfloat16*>(segments[s].k);
    t.v[s] = static_cast<const __nv_bfloat16*>(segments[s].v);
    t.nk[s] = std::max(segments[s].nk, 0);
    t.first_split[s] = plan.first_split[s];
  }
  t.first_split[count] = plan.first_split[count];
}

int max_splits(const AttentionBatchItem* items, int n) {
  int most = 0;
  for (int i = 0; i < n; ++i) most = std::max(most, items[i].plan.first_split[items[i].count]);
  return most;
}

bool batch_ok(const AttentionArgs& a, const AttentionBatchItem* items, int n) {
  if (!items || n < 1 || a.nq != n || a.hkv <= 0 || a.hq % a.hkv || a.hq / a.hkv > kDecodeMaxRows) return false;
  for (int i = 0; i < n; ++i) {
    const AttentionBatchItem& it = items[i];
    if (!it.segments || it.count < 1 || it.count > kMaxAttentionSegments || !it.plan.supported ||
        it.plan.stages != items[0].plan.stages || it.plan.first_split[it.count] < 1)
      return false;
  }
  return true;
}

}  // namespace

cudaError_t attention_segments_forward(const AttentionArgs& a, const AttentionSegment* segments, int count,
                                       const SegmentsPlan& plan, void* workspace, cudaStream_t stream) {
  if (!plan.supported || !workspace || count < 1 || count > kMaxAttentionSegments) return cudaErrorInvalidValue;
  if (a.nq == 0) return cudaSuccess;
  const int splits = plan.first_split[count];
  float* o_parts = static_cast<float*>(workspace);
  float* lse_parts = o_parts + size_t(splits) * a.nq * a.hq * a.d;
  const KernelArgs ka = partial_args(a, plan.keys_per_split, o_parts, lse_parts);
  KeySegmentTable table;
  fill_segments(table, segments, count, plan);
  const cudaError_t e = attention_decode_segments(ka, table, a.d, a.hkv, plan.stages, stream);
  if (e != cudaSuccess) return e;
  return merge_attention_states(o_parts, lse_parts, splits, a.nq, a.hq, a.d, a.o, false, a.lse, stream);
}

size_t attention_batch_workspace_bytes(const AttentionArgs& a, const AttentionBatchItem* items, int n) {
  if (!batch_ok(a, items, n)) return 0;
  return size_t(max_splits(items, n)) * n * a.hq * (size_t(a.d) + 1) * sizeof(float);
}

cudaError_t attention_batch_forward(const AttentionArgs& a, const AttentionBatchItem* items, int n, void* workspace,
                                    cudaStream_t stream) {
  if (!batch_ok(a, items, n) || !workspace) return cudaErrorInvalidValue;
  // Partials [splits, n, hq, d]: item i's split s at row i of slab s; an item's splits past its
  // own count hold empty states, which the merge adds as exact zeros.
  const int splits = max_splits(items, n);
  float* o_parts = static_cast<float*>(workspace);
  float* lse_parts = o_parts + size_t(splits) * n * a.hq * a.d;
  KernelArgs ka = partial_args(a, 0, o_parts, lse_parts);
  ka.rows = ka.group;  // one query per item
  for (int first = 0; first < n; first += kBatchItemsPerLaunch) {
    const int count = std::min(kBatchItemsPerLaunch, n - first);
    KeyBatchTable table;
    table.first_item = first;
    for (int i = 0; i < count; ++i) {
      const AttentionBatchItem& it = items[first + i];
      fill_segments(table.item[i], it.segments, it.count, it.plan);
      table.item[i].keys_per_split = it.plan.keys_per_split;
    }
    const cudaError_t e = attention_decode_batch(ka, table, count, a.d, a.hkv, splits, items[0].plan.stages, stream);
    if (e != cudaSuccess) return e;
  }
  return merge_attention_states(o_parts, lse_parts, splits, n, a.hq, a.d, a.o, false, a.lse, stream);
}

}  // namespace starmesh::kernels
