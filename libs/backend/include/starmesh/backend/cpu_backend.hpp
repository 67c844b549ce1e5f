#pragma once
// The CPU reference backend: float32 activations, GEMMs through OpenBLAS, the rest plain
// C++ split over a thread pool.
#include "starmesh/backend/backend.hpp"
#include "starmesh/core/thread_pool.hpp"

namespace starmesh {

class CpuBackend final : public backend_i {
 public:
  explicit CpuBackend(ThreadPool& pool) : pool_(pool) {}

  std::string name() const override { return "cpu"; }
  Device device() const override { return Device::cpu(); }
  DType activation_dtype() const override { return DType::f32; }

  Expected<Tensor> alloc(DType t, const Shape& shape) override;
  std::optional<int64_t> free_memory_bytes() const override;  // MemAvailable of /proc/meminfo
  Expected<Tensor> upload(const Tensor& host, DType as) override;
  Expected<Tensor> download(const Tensor& t) override;
  Status copy(const Tensor& src, const Tensor& dst) override;
  Expected<std::shared_ptr<page_arena_i>> make_page_arena(int64_t page_bytes, int64_t pages,
                                                          std::chrono::milliseconds wait) override {
    return make_host_page_arena(page_bytes, pages, wait);
  }
  int64_t page_granularity() const override { return host_page_granularity(); }

  Status embedding(const Tensor& ids, const Tensor& table, const Tensor& out) override;
  Status rms_norm(const Tensor& x, const Tensor& w, float eps, const Tensor& out) override;
  Status matmul(const Tensor& x, const Tensor& w, const Tensor& out) override;
  Status rope(const Tensor& x, const Tensor& positions, const Tensor& inv_freq) override;
  Status swiglu(const Tensor& gate, const Tensor& up, const Tensor& out) override;
  Status add(const Tensor& a, const Tensor& b, const Tensor& out) override;
  Status attention(const Tensor& q, const Tensor& k, const Tensor& v, AttentionMask mask, float scale, const Tensor& o,
                   const Tensor& lse) override;
  Status merge_states(std::span<const Tensor> o_parts, std::span<const Tensor> lse_parts, const Tensor& o,
                      const Tensor& lse) override;
  Expected<int32_t> sample(const Tensor& logits, const SampleSpec& spec) override;
  Status synchronize() override { return {}; }

 private:
  ThreadPool& pool_;
};

}  // namespace starmesh
