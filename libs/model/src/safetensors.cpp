#include "starmesh/model/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace starmesh {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

// A read-only mapping of a whole file; unmapped when the last tensor view goes away.
struct Mapping {
  void* addr = nullptr;
  size_t size = 0;
  Mapping() = default;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() {
    if (addr) ::munmap(addr, size);
  }
};

std::string errno_text() { return std::strerror(errno); }

// The safetensors dtype string for a DType, and back.
const char* st_dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "F32";
    case DType::f16:
      return "F16";
    case DType::bf16:
      return "BF16";
    case DType::i32:
      return "I32";
  }
  return "?";
}

bool st_dtype_from_name(std::string_view s, DType& out) {
  if (s == "BF16")
    out = DType::bf16;
  else if (s == "F16")
    out = DType::f16;
  else if (s == "F32")
    out = DType::f32;
  else if (s == "I32")
    out = DType::i32;
  else
    return false;
  return true;
}

// A non-negative JSON integer as uint64 (floats and negatives are refused).
bool json_u64(const json& j, uint64_t& out) {
  if (j.is_number_unsigned()) {
    out = j.get<uint64_t>();
    return true;
  }
  if (j.is_number_integer() && j.get<int64_t>() >= 0) {
    out = uint64_t(j.get<int64_t>());
    return true;
  }
  return false;
}

uint64_t read_le_u64(const std::byte* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | uint64_t(p[i]);
  return v;
}

}  // namespace

// ---------------------------------------------------------------- SafetensorsFile

Expected<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return make_error("cannot open safetensors file ", path, ": ", errno_text());
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const std::string why = errno_text();
    ::close(fd);
    return make_error("cannot stat safetensors file ", path, ": ", why);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return make_error(path, " is not a regular file; expected a .safetensors file");
  }
  const size_t file_size = size_t(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    return make_error(path, ": file is ", file_size,
                      " bytes, too short for a safetensors header (at least 8); the file is "
                      "truncated or not safetensors");
  }
  auto mapping = std::make_shared<Mapping>();
  void* addr = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  const std::string mmap_why = addr == MAP_FAILED ? errno_text() : std::string();
  ::close(fd);
  if (addr == MAP_FAILED) return make_error("cannot mmap ", path, ": ", mmap_why);
  mapping->addr = addr;
  mapping->size = file_size;
  const auto* base = static_cast<const std::byte*>(addr);

  const uint64_t header_len = read_le_u64(base);
  if (header_len > file_size - 8) {
    return make_error(path, ": header length ", header_len, " is larger than the rest of the file (", file_size - 8,
                      " bytes); the file is truncated or not safetensors");
  }
  const char* header_begin = reinterpret_cast<const char*>(base + 8);
  json header;
  try {
    header = json::parse(header_begin, header_begin + header_len);
  } catch (const json::exception& e) {
    return make_error(path, ": header is not valid JSON (", e.what(), ")");
  }
  if (!header.is_object()) return make_error(path, ": header is not a JSON object");

  SafetensorsFile out;
  out.path_ = path;
  out.data_ = base + 8 + header_len;
  const uint64_t data_size = file_size - 8 - header_len;

  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") continue;
    const std::string where = path + ": tensor '" + name + "'";
    if (!info.is_object()) return make_error(where, ": header entry is not an object");
    if (!info.contains("dtype") || !info["dtype"].is_string())
      return make_error(where, ": missing or non-string \"dtype\"");
    const std::string dtype_str = info["dtype"].get<std::string>();
    Entry e;
    if (!st_dtype_from_name(dtype_str, e.dtype)) {
      return make_error(where, " has dtype ", dtype_str,
                        ", which starmesh does not read (BF16, F16, F32, I32 only); convert the "
                        "checkpoint, e.g. to bf16");
    }
    if (!info.contains("shape") || !info["shape"].is_array())
      return make_error(where, ": missing or non-array \"shape\"");
    uint64_t count = 1;
    for (const json& d : info["shape"]) {
      uint64_t extent = 0;
      if (!json_u64(d, extent) || extent > uint64_t(std::numeric_limits<int64_t>::max()))
        return make_error(where, ": shape ", info["shape"].dump(), " has an invalid extent ", d.dump());
      if (__builtin_mul_overflow(count, extent, &count))
        return make_error(where, ": shape ", info["shape"].dump(), " overflows");
      e.shape.push_back(int64_t(extent));
    }
    uint64_t need = 0;
    if (__builtin_mul_overflow(count, uint64_t(dtype_size(e.dtype)), &need))
      return make_error(where, ": shape ", info["shape"].dump(), " overflows");
    const json* offs = info.contains("data_offsets") ? &info["data_offsets"] : nullptr;
    uint64_t begin = 0, end = 0;
    if (!offs || !offs->is_array() || offs->size() != 2 || !json_u64((*offs)[0], begin) || !json_u64((*offs)[1], end)) {
      return make_error(where, ": \"data_offsets\" must be two non-negative integers, got ",
                        offs ? offs->dump() : std::string("nothing"));
    }
    if (begin > end || end > data_size) {
      return make_error(where, ": data_offsets [", begin, ", ", end, "] are outside the data section (", data_size,
                        " bytes); the file is truncated or corrupt");
    }
    if (end - begin != need) {
      return make_error(where, ": data_offsets [", begin, ", ", end, "] span ", end - begin, " bytes but shape ",
                        to_string(e.shape), " of ", dtype_str, " needs ", need);
    }
    e.begin = size_t(begin);
    out.entries_.emplace(name, std::move(e));
  }
  out.mapping_ = std::move(mapping);
  return out;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const auto& [name, e] : entries_) out.push_back(name);
  return out;
}

Expected<Tensor> SafetensorsFile::get(std::string_view name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) return make_error("tensor '", name, "' not found in ", path_);
  const Entry& e = it->second;
  // The mapping is read-only: the const_cast only fits Tensor's interface.
  void* p = const_cast<std::byte*>(data_ + e.begin);
  return Tensor::wrap(p, e.dtype, e.shape, Device::cpu(), mapping_);
}

// ---------------------------------------------------------------- Checkpoint

Expected<Checkpoint> Checkpoint::open(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return make_error("checkpoint directory '", dir,
                      "' does not exist or is not a directory; pass the folder holding "
                      "config.json and the .safetensors files");
  }
  Checkpoint out;
  out.dir_ = dir;
  const fs::path root(dir);

  if (fs::is_regular_file(root / kSingleFile, ec)) {
    SM_ASSIGN(file, SafetensorsFile::open((root / kSingleFile).string()));
    out.source_ = kSingleFile;
    for (const std::string& name : file.names()) out.where_.emplace(name, 0);
    out.file_names_.push_back(kSingleFile);
    out.files_.push_back(std::move(file));
    return out;
  }

  const fs::path index_path = root / kIndexFile;
  if (!fs::is_regular_file(index_path, ec)) {
    return make_error("checkpoint directory '", dir, "' has neither ", kSingleFile, " nor ", kIndexFile,
                      "; is it a HF safetensors checkpoint?");
  }
  out.source_ = kIndexFile;
  const std::string index_name = index_path.string();
  json index;
  {
    std::ifstream in(index_path);
    if (!in) return make_error("cannot read ", index_name, ": ", errno_text());
    std::stringstream ss;
    ss << in.rdbuf();
    try {
      index = json::parse(ss.str());
    } catch (const json::exception& e) {
      return make_error(index_name, " is not valid JSON (", e.what(), ")");
    }
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    return make_error(index_name, " has no \"weight_map\" object");

  std::map<std::string, size_t> shard_slot;  // shard file name -> index into files_
  for (const auto& [tensor, shard_json] : index["weight_map"].items()) {
    if (!shard_json.is_string())
      return make_error(index_name, ": weight_map entry for '", tensor, "' is not a file name");
    const std::string shard = shard_json.get<std::string>();
    auto it = shard_slot.find(shard);
    if (it == shard_slot.end()) {
      const fs::path rel(shard);
      bool escapes = rel.empty() || rel.is_absolute();
      for (const auto& part : rel) escapes = escapes || part == "..";
      if (escapes) {
        return make_error(index_name, " names shard '", shard, "' for tensor '", tensor,
                          "'; shard names must be files inside the checkpoint directory");
      }
      const fs::path shard_path = root / rel;
      if (!fs::is_regular_file(shard_path, ec)) {
        return make_error(index_name, " names shard '", shard, "' (for tensor '", tensor, "'), which is missing from ",
                          dir, "; the download is incomplete");
      }
      SM_ASSIGN(file, SafetensorsFile::open(shard_path.string()));
      it = shard_slot.emplace(shard, out.files_.size()).first;
      out.file_names_.push_back(shard);
      out.files_.push_back(std::move(file));
    }
    if (!out.files_[it->second].contains(tensor)) {
      return make_error(index_name, " maps tensor '", tensor, "' to shard '", shard, "', which does not contain it");
    }
    out.where_.emplace(tensor, it->second);
  }
  return out;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(where_.size());
  for (const auto& [name, slot] : where_) out.push_back(name);
  return out;
}

Expected<std::string> Checkpoint::file_of(std::string_view name) const {
  auto it = where_.find(name);
  if (it == where_.end()) return make_error("tensor '", name, "' not found in ", (fs::path(dir_) / source_).string());
  return file_names_[it->second];
}

Expected<Tensor> Checkpoint::get(std::string_view name) const {
  auto it = where_.find(name);
  if (it == where_.end()) return make_error("tensor '", name, "' not found in ", (fs::path(dir_) / source_).string());
  return files_[it->second].get(name);
}

Expected<Tensor> Checkpoint::get(std::string_view name, const Shape& expected) const {
  SM_ASSIGN(t, get(name));
  bool match = t.shape().size() == expected.size();
  for (size_t i = 0; match && i < expected.size(); ++i) match = expected[i] == -1 || expected[i] == t.shape()[i];
  if (!match) {
    return make_error(name, ": expected shape ", to_string(expected), ", got ", to_string(t.shape()), " in ",
                      file_names_[where_.find(name)->second]);
  }
  return t;
}

// ---------------------------------------------------------------- writer

Status write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__") return make_error("write_safetensors: '__metadata__' is reserved");
    if (!seen.insert(name).second) return make_error("write_safetensors: tensor '", name, "' given twice");
    if (t.device() != Device::cpu())
      return make_error("write_safetensors: tensor '", name, "' is on ", to_string(t.device()),
                        "; copy it to the host first");
    if (!t.defined() && t.nbytes() != 0) return make_error("write_safetensors: tensor '", name, "' has no data");
    nlohmann::ordered_json entry;
    entry["dtype"] = st_dtype_name(t.dtype());
    entry["shape"] = t.shape();
    entry["data_offsets"] = {offset, offset + t.nbytes()};
    header[name] = std::move(entry);
    offset += t.nbytes();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data section starts 8-aligned

  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return make_error("cannot create ", tmp, ": ", errno_text());
  std::byte len[8];
  for (int i = 0; i < 8; ++i) len[i] = std::byte((uint64_t(text.size()) >> (8 * i)) & 0xff);
  bool ok = std::fwrite(len, 1, 8, f) == 8 && std::fwrite(text.data(), 1, text.size(), f) == text.size();
  for (const auto& [name, t] : tensors) {
    if (!ok) break;
    if (t.nbytes()) ok = std::fwrite(t.data(), 1, t.nbytes(), f) == t.nbytes();
  }
  std::string why = ok ? std::string() : errno_text();
  if (std::fclose(f) != 0 && ok) {
    ok = false;
    why = errno_text();
  }
  if (!ok) {
    std::remove(tmp.c_str());
    return make_error("cannot write ", tmp, ": ", why);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string rwhy = errno_text();
    std::remove(tmp.c_str());
    return make_error("cannot rename ", tmp, " to ", path, ": ", rwhy);
  }
  return Status::ok();
}

}  // namespace starmesh
