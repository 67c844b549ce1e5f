#include "starmesh/core/tensor.hpp"

#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace starmesh {

std::string to_string(Device d) {
  return d.kind == DeviceKind::cpu ? std::string("cpu") : "cuda:" + std::to_string(d.index);
}

std::string to_string(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

int64_t numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Tensor Tensor::zeros(DType t, Shape shape) {
  Tensor out;
  out.dtype_ = t;
  out.shape_ = std::move(shape);
  const size_t bytes = std::max<size_t>(out.nbytes(), 1);
  // 64-byte alignment: SIMD loads and BLAS like it.
  void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, bytes);
  out.owner_ = std::shared_ptr<void>(p, std::free);
  out.data_ = p;
  return out;
}

Tensor Tensor::from_f32(std::span<const float> values, Shape shape, DType t) {
  Tensor out = zeros(t, std::move(shape));
  if (size_t(out.numel()) != values.size()) throw std::invalid_argument("from_f32: size mismatch");
  convert_from_f32(values.data(), t, out.data_, values.size());
  return out;
}

Tensor Tensor::from_i32(std::span<const int32_t> values, Shape shape) {
  Tensor out = zeros(DType::i32, std::move(shape));
  if (size_t(out.numel()) != values.size()) throw std::invalid_argument("from_i32: size mismatch");
  std::memcpy(out.data_, values.data(), values.size() * 4);
  return out;
}

Tensor Tensor::wrap(void* data, DType t, Shape shape, Device dev, std::shared_ptr<void> keepalive) {
  Tensor out;
  out.dtype_ = t;
  out.shape_ = std::move(shape);
  out.device_ = dev;
  out.data_ = data;
  out.owner_ = std::move(keepalive);
  return out;
}

Tensor Tensor::rows(int64_t begin, int64_t end) const {
  if (shape_.empty() || begin < 0 || end < begin || end > shape_[0])
    throw std::out_of_range("Tensor::rows [" + std::to_string(begin) + ", " + std::to_string(end) + ") of shape " +
                            to_string(shape_));
  Tensor out = *this;
  out.shape_[0] = end - begin;
  const size_t row_bytes = size_t(numel() / std::max<int64_t>(shape_[0], 1)) * dtype_size(dtype_);
  out.data_ = static_cast<char*>(data_) + size_t(begin) * (shape_[0] ? row_bytes : 0);
  return out;
}

Tensor Tensor::reshape(Shape shape) const {
  if (starmesh::numel(shape) != numel())
    throw std::invalid_argument("Tensor::reshape " + to_string(shape_) + " -> " + to_string(shape));
  Tensor out = *this;
  out.shape_ = std::move(shape);
  return out;
}

std::vector<float> Tensor::to_f32_vector() const {
  if (device_.kind != DeviceKind::cpu) throw std::logic_error("to_f32_vector on a device tensor");
  std::vector<float> out(static_cast<size_t>(numel()));
  convert_to_f32(data_, dtype_, out.data(), out.size());
  return out;
}

Tensor Tensor::clone() const {
  if (device_.kind != DeviceKind::cpu) throw std::logic_error("clone on a device tensor");
  Tensor out = zeros(dtype_, shape_);
  std::memcpy(out.data_, data_, nbytes());
  return out;
}

Status expect_tensor(const Tensor& t, DType dtype, const Shape& shape, const char* what) {
  bool ok = t.dtype() == dtype && t.rank() == int(shape.size());
  for (size_t i = 0; ok && i < shape.size(); ++i) ok = shape[i] < 0 || shape[i] == t.shape()[i];
  if (ok) return {};
  return make_error(what, ": expected ", dtype_name(dtype), " ", to_string(shape), ", got ", dtype_name(t.dtype()), " ",
                    to_string(t.shape()));
}

}  // namespace starmesh
