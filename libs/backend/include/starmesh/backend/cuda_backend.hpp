#pragma once
// The CUDA backend: bf16 activations and KV cache, f32 log-sum-exp and logits, GEMMs through
// cuBLASLt, everything else in kernels/. All work goes onto one stream; memory comes from the
// stream-ordered allocator, so a forward pass makes no host round trip except to download
// what the caller asks for. Small uploads (ids, positions, a q from the wire) are queued from
// pinned staging buffers without waiting for the stream (cuda_staging.hpp).
#include <memory>
#include <string>
#include <vector>

#include "starmesh/backend/backend.hpp"

namespace starmesh {

// GPU time of one kind of op over a profiled stretch.
struct OpTime {
  std::string op;
  int64_t calls = 0;
  double seconds = 0;
};

class CudaBackend final : public backend_i {
 public:
  // Opens `device`; an error names the device and what CUDA said (no GPU, bad index, ...).
  static Expected<std::unique_ptr<CudaBackend>> create(int device);
  ~CudaBackend() override;

  // GEMMs of at most this many rows pick their algorithm by timing on a shape's first call
  // (warm_up_gemms makes those calls before serving).
  static int tuned_gemm_rows();

  std::string name() const override;
  Device device() const override;
  DType activation_dtype() const override { return DType::bf16; }

  Expected<Tensor> alloc(DType t, const Shape& shape) override;
  Expected<Tensor> scratch(DType t, const Shape& shape) override;
  Expected<Tensor> upload(const Tensor& host, DType as) override;
  Expected<Tensor> download(const Tensor& t) override;
  Status copy(const Tensor& src, const Tensor& dst) override;
  // Paged KV on CUDA's virtual memory management (cuda_page_arena.cpp) once set_page_arena(true);
  // until then no arena (granularity 0), and caches are allocated whole.
  Expected<std::shared_ptr<page_arena_i>> make_page_arena(int64_t page_bytes, int64_t pages,
                                                          std::chrono::milliseconds wait) override;
  int64_t page_granularity() const override;

  Status embedding(const Tensor& ids, const Tensor& table, const Tensor& out) override;
  Status rms_norm(const Tensor& x, const Tensor& w, float eps, const Tensor& out) override;
  Status add_rms_norm(const Tensor& x, const Tensor& delta, const Tensor& w, float eps, const Tensor& out) override;
  Status matmul(const Tensor& x, const Tensor& w, const Tensor& out) override;
  Status rope(const Tensor& x, const Tensor& positions, const Tensor& inv_freq) override;
  Status swiglu(const Tensor& gate, const Tensor& up, const Tensor& out) override;
  Status add(const Tensor& a, const Tensor& b, const Tensor& out) override;
  // One kernel each when fusing is on; the unfused ops in order when off (the default).
  Status rope_store_kv(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& positions,
                       const Tensor& inv_freq, const Tensor& k_dst, const Tensor& v_dst) override;
  Status gate_up_swiglu(const Tensor& x, const Tensor& w, const Tensor& out) override;
  Status matmul_add(const Tensor& x, const Tensor& w, const Tensor& out) override;
  Status attention(const Tensor& q, const Tensor& k, const Tensor& v, AttentionMask mask, float scale, const Tensor& o,
                   const Tensor& lse) override;
  Status merge_states(std::span<const Tensor> o_parts, std::span<const Tensor> lse_parts, const Tensor& o,
                      const Tensor& lse) override;
  // A decode step over up to 8 segments: one kernel over all of them and one merge.
  Status attention_segments(const Tensor& q, std::span<const Tensor> keys, std::span<const Tensor> values, float scale,
                            const Tensor& o, const Tensor& lse) override;
  // A batch's rows in one launch each (set_batch_ops).
  Status scatter_rows(const Tensor& src, std::span<const Tensor> dst) override;
  Status attention_batch(const Tensor& q, std::span<const SegmentList> items, float scale, const Tensor& o,
                         const Tensor& lse) override;
  Expected<int32_t> sample(const Tensor& logits, const SampleSpec& spec) override;
  Expected<std::vector<int32_t>> sample_rows(const Tensor& logits, std::span<const RowSample> draws) override;
  Status synchronize() override;
  int64_t peak_memory_bytes() const override;
  std::optional<int64_t> free_memory_bytes() const override;

  // The raw stream (a cudaStream_t), for benchmarks and the NCCL data plane.
  void* stream() const;

  // Benchmarks: while on, each op's GPU time is recorded with a pair of CUDA events;
  // take_profile waits for the device and returns the totals per op (and shape), then clears.
  void set_profiling(bool on);
  Expected<std::vector<OpTime>> take_profile();
  // One-row matmuls run the gemv kernel (kernels/gemv.hpp) when on (the default), cuBLASLt
  // when off: for tests and the benchmark's side-by-side.
  void set_gemv(bool on);
  // The fused ops above as single kernels (on, the default: on the H100 their tests pass and a
  // decode step is 1-2% faster, bench/RESULTS.md) or as their unfused ops (off).
  void set_fused(bool on);
  // KV caches in pages of a device arena (on) or whole allocations (off, the default until
  // the GPU tests have run the arena on the H200).
  void set_page_arena(bool on);
  // scatter_rows and attention_batch as one launch for many rows (on, the default) or one
  // call a row (off): for the side-by-side of the concurrency bench.
  void set_batch_ops(bool on);
  // Small uploads queued from pinned slots without a wait, small downloads through a pinned
  // buffer (on, the default), or both as plain synchronous copies (off): to compare.
  void set_staging(bool on);

  struct Impl;

 private:
  explicit CudaBackend(std::unique_ptr<Impl> impl);
  // matmul, or matmul_add when `accumulate` (out += the product).
  Status gemm(const Tensor& x, const Tensor& w, const Tensor& out, bool accumulate);
  std::unique_ptr<Impl> impl_;
};

}  // namespace starmesh
