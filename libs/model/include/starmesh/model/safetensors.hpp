#pragma once
// safetensors checkpoints: one file (mmapped read-only, every header entry validated on open),
// a checkpoint directory (model.safetensors, or model.safetensors.index.json + its shards),
// and a writer for host tensors (tests, tools).
//
// File layout: u64 little-endian header length N, N bytes of JSON header
// {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the data section; offsets are relative to the start of the data section.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "starmesh/core/expected.hpp"
#include "starmesh/core/tensor.hpp"

namespace starmesh {

// One .safetensors file. Tensors it hands out are zero-copy host views into the read-only
// mapping and keep it alive; writing through them faults. Copies share the mapping.
class SafetensorsFile {
 public:
  // Maps `path` and validates the header: length within the file, valid JSON object, every
  // tensor's dtype one of BF16/F16/F32/I32, shape non-negative, data_offsets inside the data
  // section and exactly numel * dtype size long. `__metadata__` is ignored.
  static Expected<SafetensorsFile> open(const std::string& path);

  const std::string& path() const { return path_; }
  // Tensor names, sorted.
  std::vector<std::string> names() const;
  bool contains(std::string_view name) const { return entries_.find(name) != entries_.end(); }
  // A zero-copy view of tensor `name`; an error naming the tensor and the file when absent.
  Expected<Tensor> get(std::string_view name) const;

 private:
  struct Entry {
    DType dtype = DType::f32;
    Shape shape;
    size_t begin = 0;  // byte offset into the data section
  };
  std::string path_;
  std::shared_ptr<void> mapping_;    // owns the mmap
  const std::byte* data_ = nullptr;  // start of the data section, inside mapping_
  std::map<std::string, Entry, std::less<>> entries_;
};

// A checkpoint directory as the HF hub lays it out: `model.safetensors`, or
// `model.safetensors.index.json` whose weight_map names the shard file of every tensor.
class Checkpoint {
 public:
  // Opens every file up front (each shard once) and checks that each tensor the index lists
  // is present in the shard it names.
  static Expected<Checkpoint> open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  // Tensor names, sorted.
  std::vector<std::string> names() const;
  bool contains(std::string_view name) const { return where_.find(name) != where_.end(); }
  // The file (name relative to dir()) that holds tensor `name`.
  Expected<std::string> file_of(std::string_view name) const;

  Expected<Tensor> get(std::string_view name) const;
  // As get(), and checks the shape (any dtype; -1 matches any extent):
  // "<name>: expected shape [512, 128], got [128, 512] in model-00001-of-00002.safetensors".
  Expected<Tensor> get(std::string_view name, const Shape& expected) const;

 private:
  std::string dir_;
  std::string source_;                   // "model.safetensors" or "model.safetensors.index.json"
  std::vector<std::string> file_names_;  // relative to dir_, parallel to files_
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t, std::less<>> where_;  // tensor name -> index into files_
};

// Writes host tensors to `path` (through a temporary file renamed into place). Names must be
// unique and not "__metadata__"; the header is padded to a multiple of 8 bytes.
Status write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors);

}  // namespace starmesh
