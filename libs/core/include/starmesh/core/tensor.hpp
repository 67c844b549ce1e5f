#pragma once
// Tensor: dtype, shape (row-major, contiguous), device, and shared owning storage.
// Views (row ranges, reshapes) share the storage of the tensor they come from.
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "starmesh/core/dtype.hpp"
#include "starmesh/core/expected.hpp"

namespace starmesh {

enum class DeviceKind : uint8_t { cpu, cuda };

struct Device {
  DeviceKind kind = DeviceKind::cpu;
  int index = 0;
  bool operator==(const Device&) const = default;
  static Device cpu() { return {}; }
  static Device cuda(int i) { return {DeviceKind::cuda, i}; }
};
std::string to_string(Device d);

using Shape = std::vector<int64_t>;
std::string to_string(const Shape& s);
int64_t numel(const Shape& s);

class Tensor {
 public:
  Tensor() = default;

  // New zero-filled host tensor.
  static Tensor zeros(DType t, Shape shape);
  // New host tensor from float values, converted to `t`.
  static Tensor from_f32(std::span<const float> values, Shape shape, DType t = DType::f32);
  static Tensor from_i32(std::span<const int32_t> values, Shape shape);
  // Wraps memory owned elsewhere; `keepalive` holds the owner (an mmap, a device allocation).
  static Tensor wrap(void* data, DType t, Shape shape, Device dev, std::shared_ptr<void> keepalive);

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_.at(i < 0 ? shape_.size() + i : i); }
  int rank() const { return int(shape_.size()); }
  int64_t numel() const { return starmesh::numel(shape_); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }
  Device device() const { return device_; }
  bool defined() const { return data_ != nullptr; }

  void* data() const { return data_; }
  template <class T>
  T* data_as() const {
    return static_cast<T*>(data_);
  }

  // Rows [begin, end) of the first dimension, sharing storage.
  Tensor rows(int64_t begin, int64_t end) const;
  // Same storage, another shape with the same element count.
  Tensor reshape(Shape shape) const;

  // Host-only helpers (tests, references): every element as float / a deep copy.
  std::vector<float> to_f32_vector() const;
  Tensor clone() const;

 private:
  DType dtype_ = DType::f32;
  Shape shape_;
  Device device_;
  void* data_ = nullptr;
  std::shared_ptr<void> owner_;
};

// Checks that `t` has the given dtype and shape (-1 matches any extent), naming `what`.
Status expect_tensor(const Tensor& t, DType dtype, const Shape& shape, const char* what);

}  // namespace starmesh
