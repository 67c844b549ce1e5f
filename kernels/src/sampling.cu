// Sampling on the device, step for step the host reference (libs/backend/src/sampling.cpp).
// Greedy: one CTA, one coalesced pass. Otherwise one cluster of 8 CTAs holds the logits in
// shared memory, a slice each; every radix pass builds a histogram per CTA (warp-aggregated
// atomics), and after a cluster barrier each CTA reads all 8 through distributed shared
// memory and takes the same decision. Weights are integers (fixed point), so no result
// depends on the order of the atomic additions.
#include <cooperative_groups.h>

#include <cstdint>

#include "starmesh/kernels/sampling.hpp"

namespace starmesh::kernels {
namespace {

namespace cg = cooperative_groups;
using u64 = unsigned long long;

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr int kClusterCtas = 8;
constexpr int kMaxSlice = 48 * 1024;  // floats per CTA: 192 KB of shared memory

struct Shared {
  u64 hist[8][256];        // radix pass p's histogram of this CTA's slice (4 for top-k, 4 for top-p)
  u64 argmax, mass, kept;  // this CTA's share of each cluster-wide reduction
  u64 warp_vals[kWarps];
  u64 above;
  uint32_t prefix;
};

__device__ __forceinline__ uint32_t key_of(float x) {
  const uint32_t b = __float_as_uint(x);
  if (isnan(x)) return 0;
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// exp((x - top) / T) in 32.32 fixed point (<= 2^32), as weight() in libs/backend/src/sampling.cpp:
// the top value weighs 2^32 even where the quotient is not a number; a NaN weighs 0.
__device__ __forceinline__ u64 weight_of(float x, float top, float inv_t) {
  if (x == top) return u64(1) << 32;
  const float e = expf((x - top) * inv_t);
  return e > 0.0f ? static_cast<u64>(e * 4294967296.0f) : u64(0);
}

__device__ __forceinline__ u64 packed_max(float x, int index) {
  return (u64(key_of(x)) << 32) | (0xFFFFFFFFu - uint32_t(index));  // first maximum wins ties
}

// Max (sum = false) or sum over the CTA, returned to every thread.
__device__ u64 block_reduce(u64 v, bool sum, u64* warp_vals) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int off = 16; off > 0; off /= 2) {
    const u64 o = __shfl_xor_sync(0xffffffffu, v, off);
    v = sum ? v + o : (o > v ? o : v);
  }
  __syncthreads();  // warp_vals may still be read by the previous call
  if (lane == 0) warp_vals[warp] = v;
  __syncthreads();
  v = warp_vals[0];
  for (int w = 1; w < kWarps; ++w) v = sum ? v + warp_vals[w] : (warp_vals[w] > v ? warp_vals[w] : v);
  return v;
}

// Inclusive prefix sum over the CTA in thread order; total: the CTA's sum.
__device__ u64 block_inclusive_sum(u64 v, u64* warp_vals, u64& total) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int off = 1; off < 32; off *= 2) {
    const u64 o = __shfl_up_sync(0xffffffffu, v, off);
    if (lane >= off) v += o;
  }
  __syncthreads();
  if (lane == 31) warp_vals[warp] = v;
  __syncthreads();
  total = 0;
  for (int w = 0; w < kWarps; ++w) {
    if (w < warp) v += warp_vals[w];
    total += warp_vals[w];
  }
  return v;
}

// Lanes with the same digit add their weights in one atomic (digit 256: nothing to add).
// Weights are <= 2^32: split in 16-bit halves, 32 of which sum without overflow.
__device__ __forceinline__ void add_to_bin(u64* hist, int digit, u64 w) {
  const unsigned peers = __match_any_sync(0xffffffffu, digit);
  const unsigned lo = __reduce_add_sync(peers, unsigned(w & 0xFFFFu));
  const unsigned hi = __reduce_add_sync(peers, unsigned(w >> 16));
  const u64 sum = (u64(hi) << 16) + lo;
  if (digit < 256 && int(threadIdx.x % 32) == __ffs(peers) - 1 && sum) atomicAdd(hist + digit, sum);
}

// Sum of one u64 per CTA of the cluster (ranks below `upto`), read from each CTA's `slot`.
__device__ u64 cluster_sum(cg::cluster_group& cluster, u64* slot, int upto) {
  u64 s = 0;
  for (int r = 0; r < upto; ++r) s += *cluster.map_shared_rank(slot, r);
  return s;
}

// The largest key t with sum over {key_i >= t} of weight(x_i, key_i) >= target, over the
// whole vocabulary (all slices); histograms sh.hist[first_pass .. first_pass + 3].
template <class Weight>
__device__ uint32_t select_key(const float* slice, int count, const Weight& weight, u64 target, int first_pass,
                               Shared& sh, cg::cluster_group& cluster) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  uint32_t prefix = 0, mask = 0;
  u64 above = 0;
  for (int pass = 0; pass < 4; ++pass) {
    const int shift = 24 - 8 * pass;
    u64* hist = sh.hist[first_pass + pass];
    for (int b = threadIdx.x; b < 256; b += kThreads) hist[b] = 0;
    __syncthreads();
    for (int base = 0; base < count; base += kThreads) {  // whole warps: add_to_bin is warp-wide
      const int j = base + int(threadIdx.x);
      int digit = 256;
      u64 w = 0;
      if (j < count) {
        const float x = slice[j];
        const uint32_t key = key_of(x);
        if ((key & mask) == prefix) {
          digit = int((key >> shift) & 255);
          w = weight(x, key);
        }
      }
      add_to_bin(hist, digit, w);
    }
    cluster.sync();   // every slice's histogram of this pass is complete
    if (warp == 0) {  // lane l scans bins 255 - 8l down to 248 - 8l, summed over the cluster
      u64 bins[8], mine = 0;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        bins[j] = 0;
        for (int r = 0; r < kClusterCtas; ++r) bins[j] += cluster.map_shared_rank(hist, r)[255 - 8 * lane - j];
        mine += bins[j];
      }
      u64 incl = mine;
      for (int off = 1; off < 32; off *= 2) {
        const u64 o = __shfl_up_sync(0xffffffffu, incl, off);
        if (lane >= off) incl += o;
      }
      const unsigned hit = __ballot_sync(0xffffffffu, above + incl >= target);
      if (lane == __ffs(hit) - 1) {
        u64 acc = above + incl - mine;
        for (int j = 0; j < 8; ++j) {
          if (acc + bins[j] >= target) {
            sh.prefix = prefix | (uint32_t(255 - 8 * lane - j) << shift);
            sh.above = acc;
            break;
          }
          acc += bins[j];
        }
      }
    }
    __syncthreads();
    prefix = sh.prefix;
    above = sh.above;
    mask |= 255u << shift;
    __syncthreads();  // sh.prefix is rewritten by the next pass
  }
  return prefix;
}

__global__ void __cluster_dims__(kClusterCtas, 1, 1) __launch_bounds__(kThreads)
    sample_kernel(const float* logits, int n, float temperature, int top_k, float top_p, double u, int32_t* out) {
  extern __shared__ float slice[];
  __shared__ Shared sh;
  cg::cluster_group cluster = cg::this_cluster();
  const int rank = int(cluster.block_rank());
  const int per = (n + kClusterCtas - 1) / kClusterCtas;
  const int begin = min(n, rank * per), count = min(n, begin + per) - begin;
  u64 best = 0;
  for (int j = threadIdx.x; j < count; j += kThreads) {
    slice[j] = logits[begin + j];
    best = max(best, packed_max(slice[j], begin + j));
  }
  best = block_reduce(best, false, sh.warp_vals);  // its barriers also publish the slice
  if (threadIdx.x == 0) sh.argmax = best;
  cluster.sync();
  for (int r = 0; r < kClusterCtas; ++r) best = max(best, *cluster.map_shared_rank(&sh.argmax, r));
  const float top = logits[int(0xFFFFFFFFu - uint32_t(best & 0xFFFFFFFFu))], inv_t = 1.0f / temperature;

  uint32_t floor_key = 0;
  if (top_k > 0 && top_k < n)
    floor_key = select_key(
        slice, count, [](float, uint32_t) { return u64(1); }, u64(top_k), 0, sh, cluster);
  auto kept = [&](float x, uint32_t key) { return key >= floor_key ? weight_of(x, top, inv_t) : u64(0); };
  auto slice_mass = [&]() {
    u64 m = 0;
    for (int j = threadIdx.x; j < count; j += kThreads) m += kept(slice[j], key_of(slice[j]));
    return block_reduce(m, true, sh.warp_vals);
  };
  if (top_p < 1.0f) {
    const u64 mine = slice_mass();
    if (threadIdx.x == 0) sh.mass = mine;
    cluster.sync();
    const u64 mass = cluster_sum(cluster, &sh.mass, kClusterCtas);
    floor_key = select_key(slice, count, kept, u64(ceil(double(top_p) * double(mass))), 4, sh, cluster);
  }
  const u64 mine = slice_mass();
  if (threadIdx.x == 0) sh.kept = mine;
  cluster.sync();
  const u64 total = cluster_sum(cluster, &sh.kept, kClusterCtas), before = cluster_sum(cluster, &sh.kept, rank);
  if (total == 0) {  // every logit NaN: nothing weighs, the greedy choice (the first) stands
    if (rank == 0 && threadIdx.x == 0) *out = int(0xFFFFFFFFu - uint32_t(best & 0xFFFFFFFFu));
    cluster.sync();
    return;
  }
  u64 r = u64(u * double(total));
  if (r > total - 1) r = total - 1;
  if (before <= r && r < before + mine) {  // this slice holds the draw: walk it in order
    u64 run = before;
    for (int base = 0; base < count; base += kThreads) {
      const int j = base + int(threadIdx.x);
      const u64 w = j < count ? kept(slice[j], key_of(slice[j])) : 0;
      u64 chunk = 0;
      const u64 incl = block_inclusive_sum(w, sh.warp_vals, chunk);
      if (w && run + incl - w <= r && r < run + incl) *out = begin + j;  // exactly one thread
      run += chunk;
      if (run > r) break;  // the same in every thread
    }
  }
  cluster.sync();  // no CTA leaves while another may still read its shared memory
}

// Greedy alone: one CTA reads the logits coalesced.
__global__ void __launch_bounds__(kThreads) argmax_kernel(const float* logits, int n, int32_t* out) {
  __shared__ u64 warp_vals[kWarps];
  u64 best = 0;
  for (int i = int(threadIdx.x); i < n; i += kThreads) best = max(best, packed_max(logits[i], i));
  best = block_reduce(best, false, warp_vals);
  if (threadIdx.x == 0) *out = int(0xFFFFFFFFu - uint32_t(best & 0xFFFFFFFFu));
}

}  // namespace

int sample_max_vocab() { return kClusterCtas * kMaxSlice; }

cudaError_t sample_token(const float* logits, int n, float temperature, int top_k, float top_p, double u, int32_t* out,
                         cudaStream_t stream) {
  if (n < 1 || !logits || !out) return cudaErrorInvalidValue;
  if (temperature == 0.0f || top_k == 1) {
    argmax_kernel<<<1, kThreads, 0, stream>>>(logits, n, out);
    return cudaGetLastError();
  }
  if (n > sample_max_vocab()) return cudaErrorNotSupported;
  const int slice_bytes = (n + kClusterCtas - 1) / kClusterCtas * int(sizeof(float));
  const cudaError_t e = cudaFuncSetAttribute(sample_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, slice_bytes);
  if (e != cudaSuccess) return e;
  sample_kernel<<<kClusterCtas, kThreads, size_t(slice_bytes), stream>>>(logits, n, temperature, top_k, top_p, u, out);
  return cudaGetLastError();
}

}  // namespace starmesh::kernels
