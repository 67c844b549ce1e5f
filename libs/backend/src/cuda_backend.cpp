#include "starmesh/backend/cuda_backend.hpp"

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <map>
#include <span>
#include <tuple>
#include <vector>

#include "cuda_page_arena.hpp"
#include "cuda_staging.hpp"
#include "starmesh/kernels/attention.hpp"
#include "starmesh/kernels/elementwise.hpp"
#include "starmesh/kernels/gemv.hpp"
#include "starmesh/kernels/sampling.hpp"

namespace starmesh {
namespace {

constexpr size_t kCublasWorkspaceBytes = size_t(32) << 20;
constexpr size_t kMaxGemmPlans = 4096;
constexpr int kTunedGemmRows = 16;  // GEMMs of at most this many rows pick their algorithm by timing
constexpr int kGemmCandidates = 8;

Status cuda_status(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return {};
  return make_error(what, ": ", cudaGetErrorString(e));
}

Status cublas_status(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return {};
  return make_error(what, ": cuBLASLt status ", int(s));
}

// Every CUDA op takes tensors on this backend's device with the given dtype.
Status expect_device(const Tensor& t, Device dev, DType dtype, const char* what) {
  if (!t.defined()) return make_error(what, ": tensor is empty");
  if (t.device() != dev) return make_error(what, ": tensor is on ", to_string(t.device()), ", not ", to_string(dev));
  if (t.dtype() != dtype) return make_error(what, ": expected ", dtype_name(dtype), ", got ", dtype_name(t.dtype()));
  return {};
}

cudaDataType_t cuda_type(DType t) { return t == DType::f32 ? CUDA_R_32F : CUDA_R_16BF; }

// Profile labels: GEMMs by shape (their bandwidth differs), attention by rows and keys.
std::string fmt_matmul(const Tensor& x, const Tensor& w, const Tensor& out) {
  return "matmul [" + std::to_string(x.dim(0)) + " x " + std::to_string(w.dim(1)) + "] x [" + std::to_string(w.dim(0)) +
         " x " + std::to_string(w.dim(1)) + "]^T -> " + std::string(dtype_name(out.dtype()));
}
std::string fmt_attention(const Tensor& q, const Tensor& k) {
  return "attention " + std::to_string(q.dim(0)) + " rows x " + std::to_string(k.dim(0)) + " keys";
}

}  // namespace

struct CudaBackend::Impl {
  int device = 0;
  int num_sms = 0;
  bool hopper = false;  // compute capability 9.0: the wgmma kernels run
  cudaStream_t stream = nullptr;
  cublasLtHandle_t lt = nullptr;
  void* lt_workspace = nullptr;
  // A GEMM shape's descriptors and the heuristic's algorithm, made once per shape and output
  // type (a decode step runs the same few shapes hundreds of times).
  struct GemmPlan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t w = nullptr, x = nullptr, out = nullptr;
    cublasLtMatmulAlgo_t algo{};
    ~GemmPlan() {
      if (op) cublasLtMatmulDescDestroy(op);
      for (auto l : {w, x, out})
        if (l) cublasLtMatrixLayoutDestroy(l);
    }
  };
  std::map<std::tuple<int64_t, int64_t, int64_t, int>, std::unique_ptr<GemmPlan>> gemms;
  // The first call of a shape also times the candidates for few rows (see gemm_plan).
  // out_is_addend: the call adds to what `out` holds, so the timing runs into a spare output.
  Expected<const GemmPlan*> gemm_plan(int64_t n, int64_t k, int64_t m, DType out_type, const void* w, const void* x,
                                      void* out, bool out_is_addend);
  int fastest_gemm(const GemmPlan& p, std::span<const cublasLtMatmulHeuristicResult_t> candidates, const void* w,
                   const void* x, void* out);
  bool gemv = true;         // one-row matmuls on the gemv kernel (set_gemv)
  bool fused = true;        // the fused ops as single kernels (set_fused)
  bool page_arena = false;  // paged KV on a device arena (set_page_arena: a worker turns it on)
  bool batch_ops = true;    // scatter_rows, attention_batch in one launch (set_batch_ops)

  // Op profile (benchmarks): a pair of events around each op while on.
  struct Mark {
    std::string op;
    cudaEvent_t begin, end;
  };
  bool profiling = false;
  std::vector<Mark> marks;
  std::vector<cudaEvent_t> spare_events;
  PinnedStaging staging;  // small uploads and downloads (set_staging)
  bool use_staging = true;
  cudaEvent_t event() {
    if (spare_events.empty()) {
      cudaEvent_t e = nullptr;
      cudaEventCreate(&e);
      return e;
    }
    cudaEvent_t e = spare_events.back();
    spare_events.pop_back();
    return e;
  }

  Expected<Tensor> alloc_raw(DType t, const Shape& shape, bool zero) {
    const size_t bytes = std::max<size_t>(size_t(numel(shape)) * dtype_size(t), 1);
    void* p = nullptr;
    SM_TRY(cuda_status(cudaMallocAsync(&p, bytes, stream), "cudaMallocAsync"));
    if (zero) SM_TRY(cuda_status(cudaMemsetAsync(p, 0, bytes, stream), "cudaMemsetAsync"));
    cudaStream_t s = stream;
    std::shared_ptr<void> owner(p, [s](void* q) { cudaFreeAsync(q, s); });
    return Tensor::wrap(p, t, shape, Device::cuda(device), std::move(owner));
  }
};

// Records the GPU time of one op while profiling is on (an event before, one after).
class OpScope {
 public:
  template <class Label>
  OpScope(CudaBackend::Impl& impl, Label&& label) : impl_(impl) {
    if (!impl.profiling) return;
    mark_.op = std::string(label());
    mark_.begin = impl.event();
    mark_.end = impl.event();
    cudaEventRecord(mark_.begin, impl.stream);
  }
  ~OpScope() {
    if (!mark_.begin) return;
    cudaEventRecord(mark_.end, impl_.stream);
    impl_.marks.push_back(std::move(mark_));
  }
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

 private:
  CudaBackend::Impl& impl_;
  CudaBackend::Impl::Mark mark_{{}, nullptr, nullptr};
};
#define SM_OP_SCOPE(label) OpScope op_scope_(*impl_, [&] { return label; })

// Row-major out[n, m] = x w^T is column-major out^T[m, n] = (w as [k, m])^T x^T.
Expected<const CudaBackend::Impl::GemmPlan*> CudaBackend::Impl::gemm_plan(int64_t n, int64_t k, int64_t m,
                                                                          DType out_type, const void* w, const void* x,
                                                                          void* out, bool out_is_addend) {
  const auto key = std::make_tuple(n, k, m, int(out_type));
  if (auto it = gemms.find(key); it != gemms.end()) return it->second.get();
  if (gemms.size() >= kMaxGemmPlans) {
    // Prompt lengths vary without end: bound the cache by forgetting the heuristic's plans,
    // never the timed ones (few rows, a handful of shapes), whose timing would stall serving.
    std::erase_if(gemms, [](const auto& entry) { return std::get<0>(entry.first) > kTunedGemmRows; });
  }
  auto p = std::make_unique<GemmPlan>();
  const cublasOperation_t transa = CUBLAS_OP_T, transb = CUBLAS_OP_N;
  SM_TRY(cublas_status(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "matmul desc"));
  SM_TRY(cublas_status(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &transa, sizeof(transa)),
                       "transa"));
  SM_TRY(cublas_status(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &transb, sizeof(transb)),
                       "transb"));
  SM_TRY(cublas_status(cublasLtMatrixLayoutCreate(&p->w, CUDA_R_16BF, uint64_t(k), uint64_t(m), k), "layout w"));
  SM_TRY(cublas_status(cublasLtMatrixLayoutCreate(&p->x, CUDA_R_16BF, uint64_t(k), uint64_t(n), k), "layout x"));
  SM_TRY(cublas_status(cublasLtMatrixLayoutCreate(&p->out, cuda_type(out_type), uint64_t(m), uint64_t(n), m),
                       "layout out"));
  // Few rows (decode steps) are bound by reading the weight, and the heuristic's first pick
  // reached only about half the copy bandwidth on some of them (H200, [1 x 4096] x
  // [4096 x 4096]^T): time its best few on the real operands once and keep the fastest.
  const int wanted = n <= kTunedGemmRows ? kGemmCandidates : 1;
  cublasLtMatmulPreference_t pref = nullptr;
  cublasLtMatmulHeuristicResult_t results[kGemmCandidates] = {};
  int found = 0;
  Status st = cublas_status(cublasLtMatmulPreferenceCreate(&pref), "matmul preference");
  if (st)
    st = cublas_status(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                            &kCublasWorkspaceBytes, sizeof(kCublasWorkspaceBytes)),
                       "matmul preference");
  if (st)
    st = cublas_status(
        cublasLtMatmulAlgoGetHeuristic(lt, p->op, p->w, p->x, p->out, p->out, pref, wanted, results, &found),
        "matmul heuristic");
  if (pref) cublasLtMatmulPreferenceDestroy(pref);
  SM_TRY(st);
  if (found == 0) return make_error("matmul: cuBLASLt has no algorithm for [", n, ", ", k, "] x [", m, ", ", k, "]^T");
  if (found > 1) {
    // The candidates run into the output: never into a residual that is yet to be added to.
    Tensor spare;
    if (out_is_addend) {
      SM_ASSIGN(t, alloc_raw(out_type, {n, m}, false));
      spare = t;
    }
    p->algo = results[fastest_gemm(*p, {results, size_t(found)}, w, x, spare.data() ? spare.data() : out)].algo;
  } else {
    p->algo = results[0].algo;
  }
  return gemms.emplace(key, std::move(p)).first->second.get();
}

int CudaBackend::Impl::fastest_gemm(const GemmPlan& p, std::span<const cublasLtMatmulHeuristicResult_t> candidates,
                                    const void* w, const void* x, void* out) {
  cudaEvent_t start = nullptr, stop = nullptr;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  const float alpha = 1.0f, beta = 0.0f;
  int best = 0;  // the heuristic's pick unless another runs faster
  float best_ms = INFINITY;
  for (size_t i = 0; i < candidates.size(); ++i) {
    auto run = [&] {
      return cublasLtMatmul(lt, p.op, &alpha, w, p.w, x, p.x, &beta, out, p.out, out, p.out, &candidates[i].algo,
                            lt_workspace, kCublasWorkspaceBytes, stream) == CUBLAS_STATUS_SUCCESS;
    };
    if (!run()) continue;  // warm-up; a candidate that fails is not taken
    cudaEventRecord(start, stream);
    for (int r = 0; r < 5; ++r) run();
    cudaEventRecord(stop, stream);
    float ms = 0;
    if (cudaEventSynchronize(stop) != cudaSuccess || cudaEventElapsedTime(&ms, start, stop) != cudaSuccess) continue;
    if (ms < best_ms) {
      best = int(i);
      best_ms = ms;
    }
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return best;
}

CudaBackend::CudaBackend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

int CudaBackend::tuned_gemm_rows() { return kTunedGemmRows; }

void CudaBackend::set_profiling(bool on) { impl_->profiling = on; }
void CudaBackend::set_gemv(bool on) { impl_->gemv = on; }
void CudaBackend::set_fused(bool on) { impl_->fused = on; }
void CudaBackend::set_page_arena(bool on) { impl_->page_arena = on; }
void CudaBackend::set_batch_ops(bool on) { impl_->batch_ops = on; }

void CudaBackend::set_staging(bool on) { impl_->use_staging = on; }

int64_t CudaBackend::page_granularity() const {
  if (!impl_->page_arena) return 0;
  auto g = cuda_page_granularity(impl_->device);
  return g ? *g : 0;
}

Expected<std::shared_ptr<page_arena_i>> CudaBackend::make_page_arena(int64_t page_bytes, int64_t pages,
                                                                     std::chrono::milliseconds wait) {
  if (!impl_->page_arena) return backend_i::make_page_arena(page_bytes, pages, wait);
  return make_cuda_page_arena(impl_->device, impl_->stream, page_bytes, pages, wait);
}

Expected<std::vector<OpTime>> CudaBackend::take_profile() {
  SM_TRY(synchronize());
  std::map<std::string, OpTime> by_op;
  for (const Impl::Mark& m : impl_->marks) {
    float ms = 0;
    cudaEventElapsedTime(&ms, m.begin, m.end);
    OpTime& t = by_op[m.op];
    t.op = m.op;
    t.calls += 1;
    t.seconds += ms * 1e-3;
    impl_->spare_events.push_back(m.begin);
    impl_->spare_events.push_back(m.end);
  }
  impl_->marks.clear();
  std::vector<OpTime> out;
  for (auto& [op, t] : by_op) out.push_back(t);
  return out;
}

CudaBackend::~CudaBackend() {
  if (!impl_) return;
  cudaStreamSynchronize(impl_->stream);
  if (impl_->lt_workspace) cudaFree(impl_->lt_workspace);
  for (const Impl::Mark& m : impl_->marks) {
    cudaEventDestroy(m.begin);
    cudaEventDestroy(m.end);
  }
  for (cudaEvent_t e : impl_->spare_events) cudaEventDestroy(e);
  if (impl_->lt) cublasLtDestroy(impl_->lt);
  if (impl_->stream) cudaStreamDestroy(impl_->stream);
}

Expected<std::unique_ptr<CudaBackend>> CudaBackend::create(int device) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) return make_error("CUDA backend: no usable GPU (", cudaGetErrorString(e), ")");
  if (device < 0 || device >= count)
    return make_error("CUDA backend: device ", device, " does not exist (", count, " visible)");
  auto impl = std::make_unique<Impl>();
  impl->device = device;
  SM_TRY(cuda_status(cudaSetDevice(device), "cudaSetDevice"));
  SM_TRY(cuda_status(cudaDeviceGetAttribute(&impl->num_sms, cudaDevAttrMultiProcessorCount, device),
                     "cudaDeviceGetAttribute"));
  int major = 0, minor = 0;
  SM_TRY(cuda_status(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), "compute capability"));
  SM_TRY(cuda_status(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device), "compute capability"));
  impl->hopper = major == 9 && minor == 0;
  SM_TRY(cuda_status(cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking), "cudaStreamCreate"));
  // Keep freed blocks in the pool: a forward pass allocates and frees its scratch every layer.
  cudaMemPool_t pool;
  SM_TRY(cuda_status(cudaDeviceGetDefaultMemPool(&pool, device), "cudaDeviceGetDefaultMemPool"));
  uint64_t keep = UINT64_MAX;
  SM_TRY(cuda_status(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep), "cudaMemPoolSetAttribute"));
  SM_TRY(cublas_status(cublasLtCreate(&impl->lt), "cublasLtCreate"));
  SM_TRY(cuda_status(cudaMalloc(&impl->lt_workspace, kCublasWorkspaceBytes), "cudaMalloc (cuBLASLt workspace)"));
  return std::unique_ptr<CudaBackend>(new CudaBackend(std::move(impl)));
}

std::string CudaBackend::name() const { return "cuda:" + std::to_string(impl_->device); }
Device CudaBackend::device() const { return Device::cuda(impl_->device); }
void* CudaBackend::stream() const { return impl_->stream; }

Expected<Tensor> CudaBackend::alloc(DType t, const Shape& shape) {
  SM_OP_SCOPE("alloc (zero-filled)");
  for (int64_t d : shape)
    if (d < 0) return make_error("alloc: negative extent in shape ", to_string(shape));
  return impl_->alloc_raw(t, shape, true);
}

Expected<Tensor> CudaBackend::scratch(DType t, const Shape& shape) {
  for (int64_t d : shape)
    if (d < 0) return make_error("scratch: negative extent in shape ", to_string(shape));
  return impl_->alloc_raw(t, shape, false);
}

Expected<Tensor> CudaBackend::upload(const Tensor& host, DType as) {
  SM_OP_SCOPE("upload");
  if (host.device().kind != DeviceKind::cpu) return make_error("upload: source is not on the host");
  Tensor src = host;
  if (host.dtype() != as) {
    if (as == DType::i32 || host.dtype() == DType::i32)
      return make_error("upload: cannot convert ", dtype_name(host.dtype()), " to ", dtype_name(as));
    const std::vector<float> f = host.to_f32_vector();
    src = Tensor::from_f32(f, host.shape(), as);
  }
  SM_ASSIGN(dst, impl_->alloc_raw(as, host.shape(), false));
  if (impl_->use_staging && PinnedStaging::fits(src.nbytes())) {  // queued from a pinned copy: no wait
    SM_TRY(impl_->staging.upload(dst.data(), src.data(), src.nbytes(), impl_->stream));
    return dst;
  }
  SM_TRY(cuda_status(cudaMemcpyAsync(dst.data(), src.data(), src.nbytes(), cudaMemcpyHostToDevice, impl_->stream),
                     "upload"));
  // The host buffer may die when we return: wait until the copy has read it.
  SM_TRY(cuda_status(cudaStreamSynchronize(impl_->stream), "upload"));
  return dst;
}

Expected<Tensor> CudaBackend::download(const Tensor& t) {
  SM_OP_SCOPE("download (synchronous)");
  if (t.device().kind == DeviceKind::cpu) return t;
  SM_TRY(expect_device(t, device(), t.dtype(), "download"));
  Tensor out = Tensor::zeros(t.dtype(), t.shape());
  if (impl_->use_staging && PinnedStaging::fits(t.nbytes())) {
    SM_TRY(impl_->staging.download(out.data(), t.data(), t.nbytes(), impl_->stream));
    return out;
  }
  SM_TRY(cuda_status(cudaMemcpyAsync(out.data(), t.data(), t.nbytes(), cudaMemcpyDeviceToHost, impl_->stream),
                     "download"));
  SM_TRY(cuda_status(cudaStreamSynchronize(impl_->stream), "download"));
  return out;
}

Status CudaBackend::copy(const Tensor& src, const Tensor& dst) {
  SM_OP_SCOPE("copy");
  if (src.dtype() != dst.dtype() || src.numel() != dst.numel())
    return make_error("copy: ", dtype_name(src.dtype()), " ", to_string(src.shape()), " into ", dtype_name(dst.dtype()),
                      " ", to_string(dst.shape()));
  SM_TRY(expect_device(src, device(), src.dtype(), "copy source"));
  SM_TRY(expect_device(dst, device(), dst.dtype(), "copy destination"));
  return cuda_status(cudaMemcpyAsync(dst.data(), src.data(), src.nbytes(), cudaMemcpyDeviceToDevice, impl_->stream),
                     "copy");
}

Status CudaBackend::embedding(const Tensor& ids, const Tensor& table, const Tensor& out) {
  SM_OP_SCOPE("embedding");
  SM_TRY(expect_device(ids, device(), DType::i32, "embedding ids"));
  SM_TRY(expect_device(table, device(), DType::bf16, "embedding table"));
  const int64_t n = ids.dim(0), d = table.dim(1);
  SM_TRY(expect_device(out, device(), DType::bf16, "embedding out"));
  SM_TRY(expect_tensor(out, DType::bf16, {n, d}, "embedding out"));
  return cuda_status(
      kernels::embedding_bf16(ids.data_as<int32_t>(), table.data(), out.data(), int(n), int(d), impl_->stream),
      "embedding kernel");
}

Status CudaBackend::rms_norm(const Tensor& x, const Tensor& w, float eps, const Tensor& out) {
  SM_OP_SCOPE("rms_norm");
  for (auto [t, what] : {std::pair{&x, "rms_norm x"}, {&w, "rms_norm weight"}, {&out, "rms_norm out"}})
    SM_TRY(expect_device(*t, device(), DType::bf16, what));
  if (x.rank() != 2) return make_error("rms_norm x: expected [n, d], got ", to_string(x.shape()));
  SM_TRY(expect_tensor(w, DType::bf16, {x.dim(1)}, "rms_norm weight"));
  SM_TRY(expect_tensor(out, DType::bf16, x.shape(), "rms_norm out"));
  return cuda_status(
      kernels::rms_norm_bf16(x.data(), w.data(), out.data(), int(x.dim(0)), int(x.dim(1)), eps, impl_->stream),
      "rms_norm kernel");
}

Status CudaBackend::add_rms_norm(const Tensor& x, const Tensor& delta, const Tensor& w, float eps, const Tensor& out) {
  for (auto [t, what] : {std::pair{&x, "add_rms_norm x"},
                         {&delta, "add_rms_norm delta"},
                         {&w, "add_rms_norm weight"},
                         {&out, "add_rms_norm out"}})
    SM_TRY(expect_device(*t, device(), DType::bf16, what));
  if (x.rank() != 2) return make_error("add_rms_norm x: expected [n, d], got ", to_string(x.shape()));
  SM_TRY(expect_tensor(delta, DType::bf16, x.shape(), "add_rms_norm delta"));
  SM_TRY(expect_tensor(w, DType::bf16, {x.dim(1)}, "add_rms_norm weight"));
  SM_TRY(expect_tensor(out, DType::bf16, x.shape(), "add_rms_norm out"));
  if (!kernels::add_rms_norm_supported(x.data(), delta.data(), w.data(), out.data(), int(x.dim(1))))
    return backend_i::add_rms_norm(x, delta, w, eps, out);  // the two ops apart
  SM_OP_SCOPE("add_rms_norm");
  return cuda_status(kernels::add_rms_norm_bf16(x.data(), delta.data(), w.data(), out.data(), int(x.dim(0)),
                                                int(x.dim(1)), eps, impl_->stream),
                     "add_rms_norm kernel");
}

Status CudaBackend::matmul(const Tensor& x, const Tensor& w, const Tensor& out) { return gemm(x, w, out, false); }

Status CudaBackend::matmul_add(const Tensor& x, const Tensor& w, const Tensor& out) {
  if (!impl_->fused) return backend_i::matmul_add(x, w, out);
  return gemm(x, w, out, true);
}

Status CudaBackend::gemm(const Tensor& x, const Tensor& w, const Tensor& out, bool accumulate) {
  SM_OP_SCOPE((accumulate ? "+= " : "") + fmt_matmul(x, w, out));
  SM_TRY(expect_device(x, device(), DType::bf16, "matmul x"));
  SM_TRY(expect_device(w, device(), DType::bf16, "matmul weight"));
  if (out.dtype() != DType::bf16 && out.dtype() != DType::f32)
    return make_error("matmul out: expected bf16 or f32, got ", dtype_name(out.dtype()));
  SM_TRY(expect_device(out, device(), out.dtype(), "matmul out"));
  if (x.rank() != 2 || w.rank() != 2 || x.dim(1) != w.dim(1))
    return make_error("matmul: x ", to_string(x.shape()), " and weight ", to_string(w.shape()),
                      " do not fit (want [n, k] and [m, k])");
  const int64_t n = x.dim(0), k = x.dim(1), m = w.dim(0);
  SM_TRY(expect_tensor(out, out.dtype(), {n, m}, "matmul out"));
  if (n == 0) return {};
  if (n == 1 && impl_->gemv && kernels::gemv_supported(x.data(), w.data(), k))
    return cuda_status(
        kernels::gemv_bf16(x.data(), w.data(), out.data(), out.dtype() == DType::f32, m, k, impl_->stream,
                           accumulate ? kernels::GemvEpilogue::accumulate : kernels::GemvEpilogue::store),
        "gemv kernel");
  SM_ASSIGN(plan, impl_->gemm_plan(n, k, m, out.dtype(), w.data(), x.data(), out.data(), accumulate));
  // beta = 1 reads out as C before writing it as D (same layout): the residual add in the
  // epilogue, with one rounding.
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  return cublas_status(
      cublasLtMatmul(impl_->lt, plan->op, &alpha, w.data(), plan->w, x.data(), plan->x, &beta, out.data(), plan->out,
                     out.data(), plan->out, &plan->algo, impl_->lt_workspace, kCublasWorkspaceBytes, impl_->stream),
      "cublasLtMatmul");
}

Status CudaBackend::gate_up_swiglu(const Tensor& x, const Tensor& w, const Tensor& out) {
  const bool one_row = x.rank() == 2 && x.dim(0) == 1 && w.rank() == 2 && w.dim(1) == x.dim(1) && w.dim(0) % 2 == 0 &&
                       out.rank() == 2 && out.dim(0) == 1 && out.dim(1) * 2 == w.dim(0);
  if (!impl_->fused || !impl_->gemv || !one_row || !kernels::gemv_supported(x.data(), w.data(), x.dim(1)))
    return backend_i::gate_up_swiglu(x, w, out);  // several rows: two GEMMs and the activation
  SM_OP_SCOPE("swiglu(" + fmt_matmul(x, w, out) + ")");
  SM_TRY(expect_device(x, device(), DType::bf16, "gate_up_swiglu x"));
  SM_TRY(expect_device(w, device(), DType::bf16, "gate_up_swiglu weight"));
  SM_TRY(expect_device(out, device(), DType::bf16, "gate_up_swiglu out"));
  return cuda_status(kernels::gemv_bf16(x.data(), w.data(), out.data(), false, out.dim(1), x.dim(1), impl_->stream,
                                        kernels::GemvEpilogue::swiglu),
                     "gemv swiglu kernel");
}

Status CudaBackend::rope_store_kv(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& positions,
                                  const Tensor& inv_freq, const Tensor& k_dst, const Tensor& v_dst) {
  if (!impl_->fused) return backend_i::rope_store_kv(q, k, v, positions, inv_freq, k_dst, v_dst);
  SM_OP_SCOPE("rope_store_kv");
  for (auto [t, what] : {std::pair{&q, "rope_store_kv q"},
                         {&k, "rope_store_kv k"},
                         {&v, "rope_store_kv v"},
                         {&k_dst, "rope_store_kv k_dst"},
                         {&v_dst, "rope_store_kv v_dst"}})
    SM_TRY(expect_device(*t, device(), DType::bf16, what));
  SM_TRY(expect_device(positions, device(), DType::i32, "rope_store_kv positions"));
  SM_TRY(expect_device(inv_freq, device(), DType::f32, "rope_store_kv inv_freq"));
  if (q.rank() != 3 || q.dim(2) % 2 || k.rank() != 3 || k.dim(0) != q.dim(0) || k.dim(2) != q.dim(2))
    return make_error("rope_store_kv: q ", to_string(q.shape()), " and k ", to_string(k.shape()),
                      " do not fit (want [n, hq, even d] and [n, hkv, d])");
  SM_TRY(expect_tensor(v, DType::bf16, k.shape(), "rope_store_kv v"));
  SM_TRY(expect_tensor(k_dst, DType::bf16, k.shape(), "rope_store_kv k_dst"));
  SM_TRY(expect_tensor(v_dst, DType::bf16, k.shape(), "rope_store_kv v_dst"));
  SM_TRY(expect_tensor(positions, DType::i32, {q.dim(0)}, "rope_store_kv positions"));
  SM_TRY(expect_tensor(inv_freq, DType::f32, {q.dim(2) / 2}, "rope_store_kv inv_freq"));
  return cuda_status(kernels::rope_store_kv_bf16(q.data(), k.data(), v.data(), k_dst.data(), v_dst.data(),
                                                 positions.data_as<int32_t>(), inv_freq.data_as<float>(), int(q.dim(0)),
                                                 int(q.dim(1)), int(k.dim(1)), int(q.dim(2)), impl_->stream),
                     "rope_store_kv kernel");
}

Status CudaBackend::rope(const Tensor& x, const Tensor& positions, const Tensor& inv_freq) {
  SM_OP_SCOPE("rope");
  SM_TRY(expect_device(x, device(), DType::bf16, "rope x"));
  SM_TRY(expect_device(positions, device(), DType::i32, "rope positions"));
  SM_TRY(expect_device(inv_freq, device(), DType::f32, "rope inv_freq"));
  if (x.rank() != 3 || x.dim(2) % 2)
    return make_error("rope x: expected [n, heads, even d], got ", to_string(x.shape()));
  SM_TRY(expect_tensor(positions, DType::i32, {x.dim(0)}, "rope positions"));
  SM_TRY(expect_tensor(inv_freq, DType::f32, {x.dim(2) / 2}, "rope inv_freq"));
  return cuda_status(kernels::rope_bf16(x.data(), positions.data_as<int32_t>(), inv_freq.data_as<float>(),
                                        int(x.dim(0)), int(x.dim(1)), int(x.dim(2)), impl_->stream),
                     "rope kernel");
}

Status CudaBackend::swiglu(const Tensor& gate, const Tensor& up, const Tensor& out) {
  SM_OP_SCOPE("swiglu");
  for (auto [t, what] : {std::pair{&gate, "swiglu gate"}, {&up, "swiglu up"}, {&out, "swiglu out"}})
    SM_TRY(expect_device(*t, device(), DType::bf16, what));
  if (gate.shape() != up.shape() || gate.shape() != out.shape())
    return make_error("swiglu: shapes differ: gate ", to_string(gate.shape()), ", up ", to_string(up.shape()), ", out ",
                      to_string(out.shape()));
  return cuda_status(kernels::swiglu_bf16(gate.data(), up.data(), out.data(), gate.numel(), impl_->stream),
                     "swiglu kernel");
}

Status CudaBackend::add(const Tensor& a, const Tensor& b, const Tensor& out) {
  SM_OP_SCOPE("add");
  for (auto [t, what] : {std::pair{&a, "add a"}, {&b, "add b"}, {&out, "add out"}})
    SM_TRY(expect_device(*t, device(), DType::bf16, what));
  if (a.shape() != b.shape() || a.shape() != out.shape())
    return make_error("add: shapes differ: ", to_string(a.shape()), ", ", to_string(b.shape()), ", out ",
                      to_string(out.shape()));
  return cuda_status(kernels::add_bf16(a.data(), b.data(), out.data(), a.numel(), impl_->stream), "add kernel");
}

Status CudaBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, AttentionMask mask, float scale,
                              const Tensor& o, const Tensor& lse) {
  SM_OP_SCOPE(fmt_attention(q, k));
  for (auto [t, what] : {std::pair{&q, "attention q"}, {&k, "attention k"}, {&v, "attention v"}, {&o, "attention o"}})
    SM_TRY(expect_device(*t, device(), DType::bf16, what));
  SM_TRY(expect_device(lse, device(), DType::f32, "attention lse"));
  SM_TRY(check_attention_args(q, k, v, o, lse, DType::bf16));
  const int64_t nq = q.dim(0), hq = q.dim(1), d = q.dim(2), nk = k.dim(0), hkv = k.dim(1);
  if (d != 64 && d != 128)
    return make_error("attention: head dim ", d, " is not supported by the CUDA kernels (64, 128)");
  kernels::AttentionArgs args;
  args.q = q.data();
  args.k = k.data();
  args.v = v.data();
  args.o = o.data();
  args.lse = lse.data_as<float>();
  args.nq = int(nq);
  args.nk = int(nk);
  args.hq = int(hq);
  args.hkv = int(hkv);
  args.d = int(d);
  args.causal = mask.causal;
  args.diagonal = mask.diagonal;
  args.scale = scale;
  const kernels::AttentionPlan plan = kernels::plan_attention(args, impl_->num_sms, impl_->hopper);
  Tensor workspace;
  if (plan.workspace_bytes) {
    SM_ASSIGN(ws, impl_->alloc_raw(DType::f32, {int64_t(plan.workspace_bytes / sizeof(float))}, false));
    workspace = ws;
  }
  return cuda_status(kernels::attention_forward(args, plan, workspace.data(), impl_->stream), "attention kernel");
}

namespace {
// The kernels' arguments from q [nq, hq, d], o and lse (keys and mask set by the caller).
kernels::AttentionArgs query_args(const Tensor& q, const Tensor& o, const Tensor& lse, float scale) {
  kernels::AttentionArgs args;
  args.q = q.data();
  args.o = o.data();
  args.lse = lse.data_as<float>();
  args.nq = int(q.dim(0));
  args.hq = int(q.dim(1));
  args.d = int(q.dim(2));
  args.scale = scale;
  return args;
}
}  // namespace

Status CudaBackend::attention_segments(const Tensor& q, std::span<const Tensor> keys, std::span<const Tensor> values,
                                       float scale, const Tensor& o, const Tensor& lse) {
  if (keys.empty() || keys.size() != values.size() || keys.size() > size_t(kernels::kMaxAttentionSegments))
    return backend_i::attention_segments(q, keys, values, scale, o, lse);  // it names what is wrong
  SM_OP_SCOPE(fmt_attention(q, keys[0]) + " x " + std::to_string(keys.size()) + " segments");
  std::vector<kernels::AttentionSegment> segments;
  for (size_t i = 0; i < keys.size(); ++i) {
    for (auto [t, what] :
         {std::pair{&q, "attention q"}, {&keys[i], "attention k"}, {&values[i], "attention v"}, {&o, "attention o"}})
      SM_TRY(expect_device(*t, device(), DType::bf16, what));
    SM_TRY(check_attention_args(q, keys[i], values[i], o, lse, DType::bf16));
    segments.push_back({keys[i].data(), values[i].data(), int(keys[i].dim(0))});
  }
  SM_TRY(expect_device(lse, device(), DType::f32, "attention lse"));
  kernels::AttentionArgs args = query_args(q, o, lse, scale);
  args.hkv = int(keys[0].dim(1));
  const auto plan = kernels::plan_attention_segments(args, segments.data(), int(segments.size()), impl_->num_sms);
  if (!plan.supported) return backend_i::attention_segments(q, keys, values, scale, o, lse);  // more rows: per segment
  SM_ASSIGN(workspace, impl_->alloc_raw(DType::f32, {int64_t(plan.workspace_bytes / sizeof(float))}, false));
  return cuda_status(kernels::attention_segments_forward(args, segments.data(), int(segments.size()), plan,
                                                         workspace.data(), impl_->stream),
                     "attention kernel (segments)");
}

Status CudaBackend::scatter_rows(const Tensor& src, std::span<const Tensor> dst) {
  if (!impl_->batch_ops || src.rank() < 1 || src.dim(0) != int64_t(dst.size()))
    return backend_i::scatter_rows(src, dst);  // it names what is wrong
  SM_OP_SCOPE("scatter_rows x " + std::to_string(dst.size()));
  SM_TRY(expect_device(src, device(), src.dtype(), "scatter_rows source"));
  const int64_t row = dst.empty() ? 0 : src.numel() / int64_t(dst.size());
  std::vector<void*> to;
  for (const Tensor& d : dst) {
    SM_TRY(expect_device(d, device(), src.dtype(), "scatter_rows destination"));
    if (d.numel() != row)
      return make_error("scatter_rows: a destination of ", to_string(d.shape()), " for rows of ", row, " elements");
    to.push_back(d.data());
  }
  return cuda_status(kernels::scatter_rows(src.data(), to.data(), int(to.size()), size_t(row) * dtype_size(src.dtype()),
                                           impl_->stream),
                     "scatter_rows kernel");
}

Status CudaBackend::attention_batch(const Tensor& q, std::span<const SegmentList> items, float scale, const Tensor& o,
                                    const Tensor& lse) {
  // Any shape the batch kernel does not take (or a bad argument, which the default names)
  // goes one row at a time.
  if (!impl_->batch_ops || items.empty() || q.rank() != 3 || q.dim(0) != int64_t(items.size()))
    return backend_i::attention_batch(q, items, scale, o, lse);
  SM_OP_SCOPE("attention_batch x " + std::to_string(items.size()));
  for (auto [t, what] : {std::pair{&q, "attention q"}, {&o, "attention o"}})
    SM_TRY(expect_device(*t, device(), DType::bf16, what));
  SM_TRY(expect_device(lse, device(), DType::f32, "attention lse"));
  kernels::AttentionArgs args = query_args(q, o, lse, scale);
  std::vector<std::vector<kernels::AttentionSegment>> segments(items.size());
  std::vector<kernels::AttentionBatchItem> batch(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    const SegmentList& it = items[i];
    const int64_t r = int64_t(i);
    if (it.keys.empty() || it.keys.size() != it.values.size() ||
        it.keys.size() > size_t(kernels::kMaxAttentionSegments))
      return backend_i::attention_batch(q, items, scale, o, lse);
    for (size_t s = 0; s < it.keys.size(); ++s) {
      for (auto [t, what] : {std::pair{&it.keys[s], "attention k"}, {&it.values[s], "attention v"}})
        SM_TRY(expect_device(*t, device(), DType::bf16, what));
      if (it.keys[s].rank() == 3 && it.keys[s].dim(1) != items[0].keys[0].dim(1))  // one kv head count a launch
        return backend_i::attention_batch(q, items, scale, o, lse);
      SM_TRY(check_attention_args(q.rows(r, r + 1), it.keys[s], it.values[s], o.rows(r, r + 1), lse.rows(r, r + 1),
                                  DType::bf16));
      segments[i].push_back({it.keys[s].data(), it.values[s].data(), int(it.keys[s].dim(0))});
    }
    args.hkv = int(it.keys[0].dim(1));
    kernels::AttentionArgs one = args;  // the item alone: its plan as attention_segments makes it
    one.nq = 1;
    batch[i] = {segments[i].data(), int(segments[i].size()),
                kernels::plan_attention_segments(one, segments[i].data(), int(segments[i].size()), impl_->num_sms)};
    if (!batch[i].plan.supported) return backend_i::attention_batch(q, items, scale, o, lse);
  }
  const size_t bytes = kernels::attention_batch_workspace_bytes(args, batch.data(), int(batch.size()));
  if (bytes == 0) return backend_i::attention_batch(q, items, scale, o, lse);
  SM_ASSIGN(workspace, impl_->alloc_raw(DType::f32, {int64_t(bytes / sizeof(float))}, false));
  return cuda_status(
      kernels::attention_batch_forward(args, batch.data(), int(batch.size()), workspace.data(), impl_->stream),
      "attention kernel (batch)");
}

Status CudaBackend::merge_states(std::span<const Tensor> o_parts, std::span<const Tensor> lse_parts, const Tensor& o,
                                 const Tensor& lse) {
  SM_OP_SCOPE("merge_states");
  SM_TRY(check_merge_args(o_parts, lse_parts, o, lse, DType::bf16));
  SM_TRY(expect_device(o, device(), o.dtype(), "merge_states o"));
  SM_TRY(expect_device(lse, device(), DType::f32, "merge_states lse"));
  for (size_t i = 0; i < o_parts.size(); ++i) {
    SM_TRY(expect_device(o_parts[i], device(), o_parts[i].dtype(), "merge_states o part"));
    SM_TRY(expect_device(lse_parts[i], device(), DType::f32, "merge_states lse part"));
  }
  const int rows = int(o.dim(0)), heads = int(o.dim(1)), d = int(o.dim(2));
  auto part = [](const Tensor& po, const Tensor& pl) {
    return kernels::MergePart{po.data(), pl.data_as<float>(), po.dtype() == DType::f32};
  };
  // More parts than one launch takes: fold them in chunks into an f32 accumulator (two
  // buffers, since a launch's output must not alias its parts), the last chunk into o.
  Tensor acc_o, acc_lse, next_o, next_lse;
  size_t at = 0;
  while (true) {
    kernels::MergePartList list;
    if (acc_o.defined()) list.part[list.n++] = part(acc_o, acc_lse);
    while (list.n < kernels::kMaxMergeParts && at < o_parts.size()) {
      list.part[list.n++] = part(o_parts[at], lse_parts[at]);
      ++at;
    }
    const bool last = at == o_parts.size();
    if (last)
      return cuda_status(kernels::merge_attention_list(list, rows, heads, d, o.data(), o.dtype() == DType::f32,
                                                       lse.data_as<float>(), impl_->stream),
                         "merge_states kernel");
    if (!next_o.defined()) {
      SM_ASSIGN(t_o, impl_->alloc_raw(DType::f32, o.shape(), false));
      SM_ASSIGN(t_lse, impl_->alloc_raw(DType::f32, lse.shape(), false));
      next_o = t_o;
      next_lse = t_lse;
    }
    SM_TRY(cuda_status(kernels::merge_attention_list(list, rows, heads, d, next_o.data(), true,
                                                     next_lse.data_as<float>(), impl_->stream),
                       "merge_states kernel"));
    std::swap(acc_o, next_o);
    std::swap(acc_lse, next_lse);
  }
}

Expected<int32_t> CudaBackend::sample(const Tensor& logits, const SampleSpec& spec) {
  SM_ASSIGN(vocab, check_sample_args(logits, spec, device()));
  // The last row, drawn as sample_rows draws any row.
  const int64_t rows = logits.numel() / vocab;
  const RowSample last{rows - 1, spec};
  SM_ASSIGN(tokens, sample_rows(logits.reshape({rows, vocab}), std::span(&last, 1)));
  return tokens[0];
}

Expected<std::vector<int32_t>> CudaBackend::sample_rows(const Tensor& logits, std::span<const RowSample> draws) {
  SM_OP_SCOPE("sample_rows (synchronous)");
  SM_ASSIGN(vocab, check_sample_rows_args(logits, draws, device()));
  std::vector<int32_t> tokens(draws.size(), -1);
  if (draws.empty()) return tokens;
  // Every draw the kernel takes is queued, then one copy of the tokens and one wait: a
  // synchronisation per row cost about 30 us a request in a decode batch. The slots are this
  // call's own: requests' threads may draw at once.
  SM_ASSIGN(slots, impl_->alloc_raw(DType::i32, {int64_t(draws.size())}, false));
  std::vector<size_t> on_host;
  for (size_t i = 0; i < draws.size(); ++i) {
    const SampleSpec& spec = draws[i].spec;
    if (spec.temperature != 0.0f && spec.top_k != 1 && vocab > kernels::sample_max_vocab()) {
      on_host.push_back(i);
      continue;
    }
    const float* row = static_cast<const float*>(logits.data()) + draws[i].row * vocab;
    SM_TRY(cuda_status(kernels::sample_token(row, int(vocab), spec.temperature, spec.top_k, spec.top_p, spec.u,
                                             slots.data_as<int32_t>() + i, impl_->stream),
                       "sample_rows"));
  }
  SM_TRY(cuda_status(cudaMemcpyAsync(tokens.data(), slots.data(), tokens.size() * sizeof(int32_t),
                                     cudaMemcpyDeviceToHost, impl_->stream),
                     "sample_rows"));
  SM_TRY(cuda_status(cudaStreamSynchronize(impl_->stream), "sample_rows"));
  // Beyond the kernel's shared memory: the same rule on the host, as sample() does.
  for (size_t i : on_host) {
    SM_ASSIGN(host, download(logits.rows(draws[i].row, draws[i].row + 1)));
    SM_ASSIGN(token, sample_reference({host.data_as<float>(), size_t(vocab)}, draws[i].spec));
    tokens[i] = token;
  }
  return tokens;
}

Status CudaBackend::synchronize() { return cuda_status(cudaStreamSynchronize(impl_->stream), "synchronize"); }

int64_t CudaBackend::peak_memory_bytes() const {
  // Tensors come from the device's default stream-ordered pool: its high-water mark, plus the
  // cuBLASLt workspace, allocated apart.
  cudaMemPool_t pool = nullptr;
  uint64_t high = 0;  // the attribute is a cuuint64_t (unsigned 64-bit)
  if (cudaDeviceGetDefaultMemPool(&pool, impl_->device) != cudaSuccess ||
      cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &high) != cudaSuccess)
    return 0;
  return int64_t(high) + int64_t(kCublasWorkspaceBytes);
}

std::optional<int64_t> CudaBackend::free_memory_bytes() const {
  size_t free = 0, total = 0;
  if (cudaSetDevice(impl_->device) != cudaSuccess || cudaMemGetInfo(&free, &total) != cudaSuccess) return std::nullopt;
  return int64_t(free);
}

}  // namespace starmesh
