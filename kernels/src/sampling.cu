// Sampling on the device, step for step the host reference (libs/backend/src/sampling.cpp):
// one CTA of 1024 threads, each owning a contiguous chunk of the vocabulary; thresholds by
// radix selection (4 passes of 256-bin histograms in shared memory, integer weights, so the
// result does not depend on the order of the atomic additions).
#include <cstdint>

#include "starmesh/kernels/sampling.hpp"

namespace starmesh::kernels {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;

__device__ __forceinline__ uint32_t key_of(float x) {
  const uint32_t b = __float_as_uint(x);
  if (isnan(x)) return 0;
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// exp((x - top) / T) in 32.32 fixed point (<= 2^32).
__device__ __forceinline__ uint64_t weight_of(float x, float top, float inv_t) {
  return static_cast<uint64_t>(expf((x - top) * inv_t) * 4294967296.0f);
}

struct Shared {
  uint64_t hist[256];
  uint64_t warp_vals[kWarps];
  uint64_t above;
  uint32_t prefix;
};

// Block-wide max (op = 0) or sum (op = 1) of one value per thread, returned to every thread.
__device__ uint64_t block_reduce(uint64_t v, bool sum, Shared& sh) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int off = 16; off > 0; off /= 2) {
    const uint64_t o = __shfl_xor_sync(0xffffffffu, v, off);
    v = sum ? v + o : (o > v ? o : v);
  }
  __syncthreads();  // warp_vals may still be read by a previous call
  if (lane == 0) sh.warp_vals[warp] = v;
  __syncthreads();
  v = sh.warp_vals[0];
  for (int w = 1; w < kWarps; ++w) v = sum ? v + sh.warp_vals[w] : (sh.warp_vals[w] > v ? sh.warp_vals[w] : v);
  return v;
}

// Sum of the values of the threads before this one (thread order = vocabulary order).
__device__ uint64_t block_exclusive_sum(uint64_t v, Shared& sh) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  uint64_t incl = v;
  for (int off = 1; off < 32; off *= 2) {
    const uint64_t o = __shfl_up_sync(0xffffffffu, incl, off);
    if (lane >= off) incl += o;
  }
  __syncthreads();
  if (lane == 31) sh.warp_vals[warp] = incl;
  __syncthreads();
  uint64_t before = 0;
  for (int w = 0; w < warp; ++w) before += sh.warp_vals[w];
  return before + incl - v;
}

// The largest key t with sum over {key_i >= t} of weight(i, key_i) >= target.
template <class Weight>
__device__ uint32_t select_key(const float* logits, int begin, int end, const Weight& weight, uint64_t target,
                               Shared& sh) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  uint32_t prefix = 0, mask = 0;
  uint64_t above = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += kThreads) sh.hist[b] = 0;
    __syncthreads();
    // Neighbouring logits mostly share a digit: add runs, not single elements, to the bins.
    int run_digit = -1;
    uint64_t run = 0;
    for (int i = begin; i < end; ++i) {
      const float x = logits[i];
      const uint32_t key = key_of(x);
      if ((key & mask) != prefix) continue;
      const int digit = int((key >> shift) & 255);
      if (digit != run_digit) {
        if (run) atomicAdd(reinterpret_cast<unsigned long long*>(&sh.hist[run_digit]), run);
        run_digit = digit;
        run = 0;
      }
      run += weight(x, key);
    }
    if (run) atomicAdd(reinterpret_cast<unsigned long long*>(&sh.hist[run_digit]), run);
    __syncthreads();
    if (warp == 0) {  // lane l scans bins 255 - 8l down to 248 - 8l
      uint64_t bins[8], mine = 0;
#pragma unroll
      for (int j = 0; j < 8; ++j) mine += (bins[j] = sh.hist[255 - 8 * lane - j]);
      uint64_t incl = mine;
      for (int off = 1; off < 32; off *= 2) {
        const uint64_t o = __shfl_up_sync(0xffffffffu, incl, off);
        if (lane >= off) incl += o;
      }
      const unsigned hit = __ballot_sync(0xffffffffu, above + incl >= target);
      if (lane == __ffs(hit) - 1) {
        uint64_t acc = above + incl - mine;
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
  }
  return prefix;
}

__global__ void __launch_bounds__(kThreads) sample_kernel(const float* logits, int n, float temperature, int top_k,
                                                          float top_p, double u, int32_t* out) {
  __shared__ Shared sh;
  const int chunk = (n + kThreads - 1) / kThreads;
  const int begin = min(n, int(threadIdx.x) * chunk), end = min(n, begin + chunk);

  // The first maximum: the key above, the complement of the index below.
  uint64_t best = 0;
  for (int i = begin; i < end; ++i) {
    const uint64_t packed = (uint64_t(key_of(logits[i])) << 32) | (0xFFFFFFFFu - uint32_t(i));
    best = packed > best ? packed : best;
  }
  best = block_reduce(best, false, sh);
  const int arg = int(0xFFFFFFFFu - uint32_t(best & 0xFFFFFFFFu));
  if (temperature == 0.0f || top_k == 1) {
    if (threadIdx.x == 0) *out = arg;
    return;
  }

  const float top = logits[arg], inv_t = 1.0f / temperature;
  uint32_t floor_key = 0;
  if (top_k > 0 && top_k < n)
    floor_key = select_key(logits, begin, end, [](float, uint32_t) { return uint64_t(1); }, uint64_t(top_k), sh);
  auto kept = [&](float x, uint32_t key) { return key >= floor_key ? weight_of(x, top, inv_t) : uint64_t(0); };
  auto chunk_mass = [&]() {
    uint64_t m = 0;
    for (int i = begin; i < end; ++i) m += kept(logits[i], key_of(logits[i]));
    return m;
  };
  if (top_p < 1.0f) {
    const uint64_t mass = block_reduce(chunk_mass(), true, sh);
    floor_key = select_key(logits, begin, end, kept, uint64_t(ceil(double(top_p) * double(mass))), sh);
  }
  const uint64_t mine = chunk_mass();
  const uint64_t total = block_reduce(mine, true, sh);
  const uint64_t before = block_exclusive_sum(mine, sh);
  uint64_t r = uint64_t(u * double(total));
  if (r > total - 1) r = total - 1;
  if (before <= r && r < before + mine) {  // exactly one thread
    uint64_t run = before;
    for (int i = begin; i < end; ++i) {
      run += kept(logits[i], key_of(logits[i]));
      if (run > r) {
        *out = i;
        break;
      }
    }
  }
}

}  // namespace

cudaError_t sample_token(const float* logits, int n, float temperature, int top_k, float top_p, double u,
                         int32_t* out, cudaStream_t stream) {
  if (n < 1 || !logits || !out) return cudaErrorInvalidValue;
  sample_kernel<<<1, kThreads, 0, stream>>>(logits, n, temperature, top_k, top_p, u, out);
  return cudaGetLastError();
}

}  // namespace starmesh::kernels
