#include "starmesh/backend/cpu_backend.hpp"

#include <cblas.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>

namespace starmesh {
namespace {

// Every CPU op takes f32 host tensors (ids: i32); this names the first one that is not.
Status expect_host_f32(std::initializer_list<std::pair<const Tensor*, const char*>> ts) {
  for (auto [t, what] : ts) {
    if (!t->defined()) return make_error(what, ": tensor is empty");
    if (t->device().kind != DeviceKind::cpu) return make_error(what, ": not a CPU tensor");
    if (t->dtype() != DType::f32)
      return make_error(what, ": the CPU backend computes in f32, got ", dtype_name(t->dtype()));
  }
  return {};
}

// Rows of work below which threading costs more than it saves.
constexpr int64_t kMinParallelElements = 1 << 14;

}  // namespace

Expected<Tensor> CpuBackend::alloc(DType t, const Shape& shape) {
  for (int64_t d : shape)
    if (d < 0) return make_error("alloc: negative extent in shape ", to_string(shape));
  return Tensor::zeros(t, shape);
}

Expected<Tensor> CpuBackend::upload(const Tensor& host, DType as) {
  if (host.device().kind != DeviceKind::cpu) return make_error("upload: source is not on the host");
  if (host.dtype() == as) return host;  // already in place; share the storage (an mmap, say)
  if (as == DType::i32 || host.dtype() == DType::i32)
    return make_error("upload: cannot convert ", dtype_name(host.dtype()), " to ", dtype_name(as));
  Tensor out = Tensor::zeros(as, host.shape());
  if (as == DType::f32) {
    convert_to_f32(host.data(), host.dtype(), out.data_as<float>(), size_t(host.numel()));
  } else {
    std::vector<float> tmp(size_t(host.numel()));
    convert_to_f32(host.data(), host.dtype(), tmp.data(), tmp.size());
    convert_from_f32(tmp.data(), as, out.data(), tmp.size());
  }
  return out;
}

Expected<Tensor> CpuBackend::download(const Tensor& t) {
  if (t.device().kind != DeviceKind::cpu) return make_error("download: not a CPU tensor");
  return t;
}

Status CpuBackend::copy(const Tensor& src, const Tensor& dst) {
  if (src.dtype() != dst.dtype() || src.numel() != dst.numel())
    return make_error("copy: ", dtype_name(src.dtype()), " ", to_string(src.shape()), " into ", dtype_name(dst.dtype()),
                      " ", to_string(dst.shape()));
  std::memmove(dst.data(), src.data(), src.nbytes());
  return {};
}

Status CpuBackend::embedding(const Tensor& ids, const Tensor& table, const Tensor& out) {
  SM_TRY(expect_host_f32({{&table, "embedding table"}, {&out, "embedding out"}}));
  SM_TRY(expect_tensor(ids, DType::i32, {-1}, "embedding ids"));
  const int64_t n = ids.dim(0), vocab = table.dim(0), d = table.dim(1);
  SM_TRY(expect_tensor(out, DType::f32, {n, d}, "embedding out"));
  const int32_t* id = ids.data_as<int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    if (id[i] < 0 || id[i] >= vocab)
      return make_error(ErrorCode::invalid_argument, "token id ", id[i], " at position ", i,
                        " is outside the vocabulary [0, ", vocab, ")");
    std::memcpy(out.data_as<float>() + i * d, table.data_as<float>() + id[i] * d, size_t(d) * 4);
  }
  return {};
}

Status CpuBackend::rms_norm(const Tensor& x, const Tensor& w, float eps, const Tensor& out) {
  SM_TRY(expect_host_f32({{&x, "rms_norm x"}, {&w, "rms_norm weight"}, {&out, "rms_norm out"}}));
  if (x.rank() != 2) return make_error("rms_norm x: expected [n, d], got ", to_string(x.shape()));
  const int64_t n = x.dim(0), d = x.dim(1);
  SM_TRY(expect_tensor(w, DType::f32, {d}, "rms_norm weight"));
  SM_TRY(expect_tensor(out, DType::f32, {n, d}, "rms_norm out"));
  const float* xs = x.data_as<float>();
  const float* ws = w.data_as<float>();
  float* os = out.data_as<float>();
  pool_.parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      double ss = 0;
      for (int64_t j = 0; j < d; ++j) ss += double(xs[i * d + j]) * xs[i * d + j];
      const float r = float(1.0 / std::sqrt(ss / double(d) + eps));
      for (int64_t j = 0; j < d; ++j) os[i * d + j] = xs[i * d + j] * r * ws[j];
    }
  });
  return {};
}

Status CpuBackend::matmul(const Tensor& x, const Tensor& w, const Tensor& out) {
  SM_TRY(expect_host_f32({{&x, "matmul x"}, {&w, "matmul weight"}, {&out, "matmul out"}}));
  if (x.rank() != 2 || w.rank() != 2 || x.dim(1) != w.dim(1))
    return make_error("matmul: x ", to_string(x.shape()), " and weight ", to_string(w.shape()),
                      " do not fit (want [n, k] and [m, k])");
  const int64_t n = x.dim(0), k = x.dim(1), m = w.dim(0);
  SM_TRY(expect_tensor(out, DType::f32, {n, m}, "matmul out"));
  if (n == 0) return {};
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(m), int(k), 1.0f, x.data_as<float>(), int(k),
              w.data_as<float>(), int(k), 0.0f, out.data_as<float>(), int(m));
  return {};
}

Status CpuBackend::rope(const Tensor& x, const Tensor& positions, const Tensor& inv_freq) {
  SM_TRY(expect_host_f32({{&x, "rope x"}, {&inv_freq, "rope inv_freq"}}));
  if (x.rank() != 3 || x.dim(2) % 2)
    return make_error("rope x: expected [n, heads, even d], got ", to_string(x.shape()));
  const int64_t n = x.dim(0), heads = x.dim(1), d = x.dim(2), half = d / 2;
  SM_TRY(expect_tensor(positions, DType::i32, {n}, "rope positions"));
  SM_TRY(expect_tensor(inv_freq, DType::f32, {half}, "rope inv_freq"));
  const int32_t* pos = positions.data_as<int32_t>();
  const float* freq = inv_freq.data_as<float>();
  float* xs = x.data_as<float>();
  pool_.parallel_for(n, [&](int64_t b, int64_t e) {
    std::vector<float> c(static_cast<size_t>(half)), s(static_cast<size_t>(half));
    for (int64_t i = b; i < e; ++i) {
      for (int64_t f = 0; f < half; ++f) {
        // The angle is a float32 product, as in HF's rotary embedding.
        const float angle = float(pos[i]) * freq[f];
        c[size_t(f)] = float(std::cos(double(angle)));
        s[size_t(f)] = float(std::sin(double(angle)));
      }
      for (int64_t h = 0; h < heads; ++h) {
        float* row = xs + (i * heads + h) * d;
        for (int64_t f = 0; f < half; ++f) {
          const float a = row[f], b2 = row[f + half];
          row[f] = a * c[size_t(f)] - b2 * s[size_t(f)];
          row[f + half] = b2 * c[size_t(f)] + a * s[size_t(f)];
        }
      }
    }
  });
  return {};
}

Status CpuBackend::swiglu(const Tensor& gate, const Tensor& up, const Tensor& out) {
  SM_TRY(expect_host_f32({{&gate, "swiglu gate"}, {&up, "swiglu up"}, {&out, "swiglu out"}}));
  if (gate.shape() != up.shape() || gate.shape() != out.shape())
    return make_error("swiglu: shapes differ: gate ", to_string(gate.shape()), ", up ", to_string(up.shape()), ", out ",
                      to_string(out.shape()));
  const float* g = gate.data_as<float>();
  const float* u = up.data_as<float>();
  float* o = out.data_as<float>();
  const int64_t n = gate.numel();
  auto body = [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) o[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
  };
  if (n < kMinParallelElements)
    body(0, n);
  else
    pool_.parallel_for(n, body);
  return {};
}

Status CpuBackend::add(const Tensor& a, const Tensor& b, const Tensor& out) {
  SM_TRY(expect_host_f32({{&a, "add a"}, {&b, "add b"}, {&out, "add out"}}));
  if (a.shape() != b.shape() || a.shape() != out.shape())
    return make_error("add: shapes differ: ", to_string(a.shape()), ", ", to_string(b.shape()), ", out ",
                      to_string(out.shape()));
  const float* x = a.data_as<float>();
  const float* y = b.data_as<float>();
  float* o = out.data_as<float>();
  for (int64_t i = 0, n = a.numel(); i < n; ++i) o[i] = x[i] + y[i];
  return {};
}

}  // namespace starmesh

namespace starmesh {

Expected<int32_t> CpuBackend::sample(const Tensor& logits, const SampleSpec& spec) {
  SM_ASSIGN(vocab, check_sample_args(logits, spec, device()));
  const float* last_row = logits.data_as<float>() + (logits.numel() - vocab);
  return sample_reference({last_row, size_t(vocab)}, spec);
}

std::optional<int64_t> CpuBackend::free_memory_bytes() const {
  // MemAvailable: what the kernel can give without swapping (free memory and reclaimable cache).
  std::ifstream meminfo("/proc/meminfo");
  for (std::string line; std::getline(meminfo, line);) {
    long long kib = 0;
    if (std::sscanf(line.c_str(), "MemAvailable: %lld kB", &kib) == 1) return int64_t(kib) * 1024;
  }
  return std::nullopt;
}

}  // namespace starmesh
