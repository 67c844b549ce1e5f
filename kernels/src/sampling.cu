// Sampling on the device, step for step the host reference (libs/backend/src/sampling.cpp).
// One cooperative grid: each CTA owns a slice of the vocabulary (read coalesced), builds its
// share of each radix histogram in shared memory and adds it to a global one; after a grid
// barrier every CTA reads the same global histogram and takes the same decision. Weights are
// integers (fixed point), so no result depends on the order of the atomic additions.
#include <cooperative_groups.h>

#include <cstdint>

#include "starmesh/kernels/sampling.hpp"

namespace starmesh::kernels {
namespace {

namespace cg = cooperative_groups;
using u64 = unsigned long long;

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxBlocks = 256;
constexpr int kElemsPerBlock = 1024;  // fewer CTAs for small vocabularies

// Device scratch: a fresh histogram per radix pass (4 for top-k, 4 for top-p) and one slot
// per CTA for each grid-wide reduction, all zeroed before the launch.
struct Workspace {
  u64 hist[8][256];
  u64 argmax[kMaxBlocks];
  u64 mass[kMaxBlocks];
  u64 kept[kMaxBlocks];
};

struct Shared {
  u64 hist[256];
  u64 warp_vals[kWarps];
  u64 above;
  uint32_t prefix;
};

__device__ __forceinline__ uint32_t key_of(float x) {
  const uint32_t b = __float_as_uint(x);
  if (isnan(x)) return 0;
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// exp((x - top) / T) in 32.32 fixed point (<= 2^32).
__device__ __forceinline__ u64 weight_of(float x, float top, float inv_t) {
  return static_cast<u64>(expf((x - top) * inv_t) * 4294967296.0f);
}

// Max (sum = false) or sum of one value per thread, returned to every thread of the CTA.
__device__ u64 block_reduce(u64 v, bool sum, Shared& sh) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int off = 16; off > 0; off /= 2) {
    const u64 o = __shfl_xor_sync(0xffffffffu, v, off);
    v = sum ? v + o : (o > v ? o : v);
  }
  __syncthreads();  // warp_vals may still be read by the previous call
  if (lane == 0) sh.warp_vals[warp] = v;
  __syncthreads();
  v = sh.warp_vals[0];
  for (int w = 1; w < kWarps; ++w) v = sum ? v + sh.warp_vals[w] : (sh.warp_vals[w] > v ? sh.warp_vals[w] : v);
  return v;
}

// Inclusive prefix sum over the CTA in thread order; total: the CTA's sum.
__device__ u64 block_inclusive_sum(u64 v, Shared& sh, u64& total) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int off = 1; off < 32; off *= 2) {
    const u64 o = __shfl_up_sync(0xffffffffu, v, off);
    if (lane >= off) v += o;
  }
  __syncthreads();
  if (lane == 31) sh.warp_vals[warp] = v;
  __syncthreads();
  total = 0;
  for (int w = 0; w < kWarps; ++w) {
    if (w < warp) v += sh.warp_vals[w];
    total += sh.warp_vals[w];
  }
  return v;
}

// Sum of one slot per CTA (written before the last grid barrier), in every thread.
__device__ u64 grid_sum(const u64* slots, int blocks, int upto) {
  u64 s = 0;
  for (int b = 0; b < blocks && b < upto; ++b) s += __ldcg(slots + b);
  return s;
}

// One radix digit per warp-wide group of equal digits: the lowest lane adds the group's
// weight, so a bin that many lanes hit takes one atomic, not 32.
__device__ __forceinline__ void add_to_bin(u64* hist, int digit, u64 w) {
  const unsigned peers = __match_any_sync(0xffffffffu, digit);
  u64 sum = 0;
  for (int j = 0; j < 32; ++j) {
    const u64 wj = __shfl_sync(0xffffffffu, w, j);
    if ((peers >> j) & 1u) sum += wj;
  }
  if (digit < 256 && (threadIdx.x % 32) == __ffs(peers) - 1 && sum) atomicAdd(hist + digit, sum);
}

// The largest key t with sum over {key_i >= t} of weight(x_i, key_i) >= target, over the
// whole vocabulary; histograms ws->hist[first_pass .. first_pass + 3].
template <class Weight>
__device__ uint32_t select_key(const float* logits, int begin, int end, const Weight& weight, u64 target,
                               int first_pass, Workspace* ws, Shared& sh, cg::grid_group& grid) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  uint32_t prefix = 0, mask = 0;
  u64 above = 0;
  for (int pass = 0; pass < 4; ++pass) {
    const int shift = 24 - 8 * pass;
    for (int b = threadIdx.x; b < 256; b += kThreads) sh.hist[b] = 0;
    __syncthreads();
    // Every lane runs the same number of rounds (add_to_bin is warp-wide).
    for (int base = begin; base < end; base += kThreads) {
      const int i = base + int(threadIdx.x);
      int digit = 256;
      u64 w = 0;
      if (i < end) {
        const float x = logits[i];
        const uint32_t key = key_of(x);
        if ((key & mask) == prefix) {
          digit = int((key >> shift) & 255);
          w = weight(x, key);
        }
      }
      add_to_bin(sh.hist, digit, w);
    }
    __syncthreads();
    u64* global_hist = ws->hist[first_pass + pass];
    for (int b = threadIdx.x; b < 256; b += kThreads)
      if (sh.hist[b]) atomicAdd(global_hist + b, sh.hist[b]);
    grid.sync();
    if (warp == 0) {  // lane l scans bins 255 - 8l down to 248 - 8l
      u64 bins[8], mine = 0;
#pragma unroll
      for (int j = 0; j < 8; ++j) mine += (bins[j] = __ldcg(global_hist + 255 - 8 * lane - j));
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

__global__ void __launch_bounds__(kThreads) sample_kernel(const float* logits, int n, float temperature, int top_k,
                                                          float top_p, double u, int32_t* out, Workspace* ws) {
  __shared__ Shared sh;
  cg::grid_group grid = cg::this_grid();
  const int blocks = int(gridDim.x), per = (n + blocks - 1) / blocks;
  const int begin = min(n, int(blockIdx.x) * per), end = min(n, begin + per);

  // The first maximum: the key above, the complement of the index below.
  u64 best = 0;
  for (int i = begin + int(threadIdx.x); i < end; i += kThreads) {
    const u64 packed = (u64(key_of(logits[i])) << 32) | (0xFFFFFFFFu - uint32_t(i));
    best = packed > best ? packed : best;
  }
  best = block_reduce(best, false, sh);
  if (threadIdx.x == 0) ws->argmax[blockIdx.x] = best;
  grid.sync();
  for (int b = 0; b < blocks; ++b) {
    const u64 o = __ldcg(ws->argmax + b);
    best = o > best ? o : best;
  }
  const int arg = int(0xFFFFFFFFu - uint32_t(best & 0xFFFFFFFFu));  // greedy went to argmax_kernel

  const float top = logits[arg], inv_t = 1.0f / temperature;
  uint32_t floor_key = 0;
  if (top_k > 0 && top_k < n)
    floor_key = select_key(logits, begin, end, [](float, uint32_t) { return u64(1); }, u64(top_k), 0, ws, sh, grid);
  auto kept = [&](float x, uint32_t key) { return key >= floor_key ? weight_of(x, top, inv_t) : u64(0); };
  auto slice_mass = [&]() {
    u64 m = 0;
    for (int i = begin + int(threadIdx.x); i < end; i += kThreads) m += kept(logits[i], key_of(logits[i]));
    return block_reduce(m, true, sh);
  };
  if (top_p < 1.0f) {
    const u64 mine = slice_mass();
    if (threadIdx.x == 0) ws->mass[blockIdx.x] = mine;
    grid.sync();
    const u64 mass = grid_sum(ws->mass, blocks, blocks);
    floor_key = select_key(logits, begin, end, kept, u64(ceil(double(top_p) * double(mass))), 4, ws, sh, grid);
  }
  const u64 mine = slice_mass();
  if (threadIdx.x == 0) ws->kept[blockIdx.x] = mine;
  grid.sync();
  const u64 total = grid_sum(ws->kept, blocks, blocks), before = grid_sum(ws->kept, blocks, int(blockIdx.x));
  u64 r = u64(u * double(total));
  if (r > total - 1) r = total - 1;
  if (!(before <= r && r < before + mine)) return;  // another CTA's slice holds the draw
  // Walk the slice in vocabulary order, kThreads elements at a time.
  u64 run = before;
  for (int base = begin; base < end; base += kThreads) {
    const int i = base + int(threadIdx.x);
    const u64 w = i < end ? kept(logits[i], key_of(logits[i])) : 0;
    u64 chunk = 0;
    const u64 incl = block_inclusive_sum(w, sh, chunk);
    if (w && run + incl - w <= r && r < run + incl) *out = i;  // exactly one thread
    run += chunk;
    if (run > r) break;  // the same in every thread
  }
}

// Greedy alone needs no grid: one CTA reads the logits coalesced (no workspace, no barrier).
__global__ void __launch_bounds__(kThreads) argmax_kernel(const float* logits, int n, int32_t* out) {
  __shared__ Shared sh;
  u64 best = 0;
  for (int i = int(threadIdx.x); i < n; i += kThreads) {
    const u64 packed = (u64(key_of(logits[i])) << 32) | (0xFFFFFFFFu - uint32_t(i));
    best = packed > best ? packed : best;
  }
  best = block_reduce(best, false, sh);
  if (threadIdx.x == 0) *out = int(0xFFFFFFFFu - uint32_t(best & 0xFFFFFFFFu));
}

}  // namespace

size_t sample_workspace_bytes() { return sizeof(Workspace); }

cudaError_t sample_token(const float* logits, int n, float temperature, int top_k, float top_p, double u,
                         int32_t* out, void* workspace, int num_sms, cudaStream_t stream) {
  if (n < 1 || !logits || !out || !workspace) return cudaErrorInvalidValue;
  if (temperature == 0.0f || top_k == 1) {
    argmax_kernel<<<1, kThreads, 0, stream>>>(logits, n, out);
    return cudaGetLastError();
  }
  int blocks = (n + kElemsPerBlock - 1) / kElemsPerBlock;
  blocks = blocks < num_sms ? blocks : num_sms;  // one CTA per SM: all resident, as the barrier needs
  blocks = blocks < kMaxBlocks ? blocks : kMaxBlocks;
  blocks = blocks > 0 ? blocks : 1;
  cudaError_t e = cudaMemsetAsync(workspace, 0, sizeof(Workspace), stream);
  if (e != cudaSuccess) return e;
  auto* ws = static_cast<Workspace*>(workspace);
  void* args[] = {&logits, &n, &temperature, &top_k, &top_p, &u, &out, &ws};
  return cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(sample_kernel), dim3(blocks), dim3(kThreads), args,
                                     0, stream);
}

}  // namespace starmesh::kernels
