#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "starmesh/model/safetensors.hpp"

namespace fs = std::filesystem;
using namespace starmesh;

namespace {

const std::string kModelDir = STARMESH_GOLDEN_MODEL_DIR;
const std::string kShard1 = "model-00001-of-00002.safetensors";
const std::string kShard2 = "model-00002-of-00002.safetensors";

// A fresh directory under the system temp dir, removed with its contents at scope end.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() / ("starmesh_st_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

// Writes a safetensors file by hand: `header_len` (the length prefix, may lie), the header
// text, and `data_bytes` zero bytes.
void write_raw(const std::string& path, uint64_t header_len, const std::string& header, size_t data_bytes) {
  std::ofstream out(path, std::ios::binary);
  for (int i = 0; i < 8; ++i) out.put(char((header_len >> (8 * i)) & 0xff));
  out << header;
  out << std::string(data_bytes, '\0');
}
void write_raw(const std::string& path, const std::string& header, size_t data_bytes) {
  write_raw(path, header.size(), header, data_bytes);
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

// The error message of an Expected that must have failed.
template <class T>
std::string error_of(const Expected<T>& e) {
  REQUIRE_FALSE(e.has_value());
  return e.error().message;
}

bool mentions(const std::string& message, const std::string& what) { return message.find(what) != std::string::npos; }

}  // namespace

TEST_CASE("golden sharded checkpoint: names, shapes, values, shards") {
  auto ckpt = Checkpoint::open(kModelDir);
  REQUIRE_MESSAGE(ckpt.has_value(), (ckpt ? "" : ckpt.error().message));

  std::ifstream index_in(kModelDir + "/model.safetensors.index.json");
  const auto index = nlohmann::json::parse(index_in);
  const auto& weight_map = index["weight_map"];
  CHECK(ckpt->names().size() == weight_map.size());
  CHECK(ckpt->names().size() == 39);  // embed, 4 layers x 9, norm, lm_head

  // Every tensor comes from the shard the index names, byte for byte.
  auto shard1 = SafetensorsFile::open(kModelDir + "/" + kShard1);
  auto shard2 = SafetensorsFile::open(kModelDir + "/" + kShard2);
  REQUIRE(shard1);
  REQUIRE(shard2);
  for (const auto& [name, shard] : weight_map.items()) {
    auto where = ckpt->file_of(name);
    REQUIRE(where);
    CHECK(*where == shard.get<std::string>());
    const SafetensorsFile& file = *where == kShard1 ? *shard1 : *shard2;
    CHECK(file.contains(name));
    auto a = ckpt->get(name);
    auto b = file.get(name);
    REQUIRE(a);
    REQUIRE(b);
    CHECK(same_bytes(*a, *b));
  }
  // Layer 2 straddles the two shards.
  CHECK(*ckpt->file_of("model.layers.2.self_attn.q_proj.weight") == kShard1);
  CHECK(*ckpt->file_of("model.layers.2.self_attn.k_proj.weight") == kShard2);
  CHECK(*ckpt->file_of("lm_head.weight") == kShard2);
  CHECK_FALSE(shard1->contains("__metadata__"));

  struct Want {
    const char* name;
    Shape shape;
  };
  for (const Want& w :
       {Want{"model.embed_tokens.weight", {2048, 128}}, Want{"model.layers.0.self_attn.q_proj.weight", {512, 128}},
        Want{"model.layers.0.self_attn.k_proj.weight", {128, 128}},
        Want{"model.layers.3.self_attn.o_proj.weight", {128, 512}},
        Want{"model.layers.1.mlp.down_proj.weight", {128, 384}},
        Want{"model.layers.2.mlp.gate_proj.weight", {384, 128}}, Want{"model.norm.weight", {128}},
        Want{"lm_head.weight", {2048, 128}}}) {
    CAPTURE(w.name);
    auto t = ckpt->get(w.name, w.shape);
    REQUIRE_MESSAGE(t.has_value(), (t ? "" : t.error().message));
    CHECK(t->dtype() == DType::bf16);
    CHECK(t->device() == Device::cpu());
    const std::vector<float> v = t->to_f32_vector();
    CHECK(v.size() == size_t(numel(w.shape)));
    bool finite = true, nonzero = false;
    for (float x : v) {
      finite = finite && std::isfinite(x);
      nonzero = nonzero || x != 0.0f;
    }
    CHECK(finite);
    CHECK(nonzero);
  }
  // -1 matches any extent.
  CHECK(ckpt->get("model.embed_tokens.weight", {-1, 128}));
}

TEST_CASE("golden checkpoint: tensors keep the mapping alive after the checkpoint is gone") {
  Tensor t;
  std::vector<float> before;
  {
    auto ckpt = Checkpoint::open(kModelDir);
    REQUIRE(ckpt);
    auto got = ckpt->get("model.layers.3.mlp.up_proj.weight");
    REQUIRE(got);
    t = *got;
    before = t.to_f32_vector();
  }
  CHECK(t.to_f32_vector() == before);
}

TEST_CASE("golden checkpoint: wrong shape and missing tensor name what to fix") {
  auto ckpt = Checkpoint::open(kModelDir);
  REQUIRE(ckpt);
  CHECK(error_of(ckpt->get("model.layers.0.self_attn.q_proj.weight", {128, 512})) ==
        "model.layers.0.self_attn.q_proj.weight: expected shape [128, 512], got [512, 128] in " + kShard1);
  CHECK(error_of(ckpt->get("model.layers.3.self_attn.q_proj.weight", {512, 128, 1})) ==
        "model.layers.3.self_attn.q_proj.weight: expected shape [512, 128, 1], got [512, 128] in " + kShard2);
  const std::string missing = error_of(ckpt->get("model.layers.4.self_attn.q_proj.weight"));
  CHECK(mentions(missing, "model.layers.4.self_attn.q_proj.weight"));
  CHECK(mentions(missing, "model.safetensors.index.json"));
  CHECK(mentions(error_of(ckpt->file_of("nope.weight")), "nope.weight"));
}

TEST_CASE("write + read round trip for f32, f16, bf16, i32") {
  TempDir dir;
  const std::vector<float> values = {0.0f, 1.0f, -2.5f, 3.25f, 0.125f, -96.0f};  // exact in f16, bf16
  const std::vector<int32_t> ids = {0, -1, 2147483647, 42};
  const std::vector<std::pair<std::string, Tensor>> tensors = {
      {"a.f32", Tensor::from_f32(values, {2, 3}, DType::f32)},
      {"b.f16", Tensor::from_f32(values, {3, 2}, DType::f16)},
      {"c.bf16", Tensor::from_f32(values, {6}, DType::bf16)},
      {"d.i32", Tensor::from_i32(ids, {2, 2})},
      {"e.scalar", Tensor::from_f32(std::vector<float>{7.0f}, {}, DType::f32)},
      {"f.empty", Tensor::zeros(DType::bf16, {0, 4})},
      {"g.odd", Tensor::from_f32(std::vector<float>{1, 2, 3}, {3}, DType::f16)},  // 6 bytes
  };
  const std::string path = dir.file("model.safetensors");
  REQUIRE(write_safetensors(path, tensors).is_ok());
  CHECK_FALSE(fs::exists(path + ".tmp"));

  // The data section starts 8-aligned.
  std::ifstream in(path, std::ios::binary);
  unsigned char len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  CHECK(len[0] % 8 == 0);

  auto file = SafetensorsFile::open(path);
  REQUIRE_MESSAGE(file.has_value(), (file ? "" : file.error().message));
  CHECK(file->names() == std::vector<std::string>{"a.f32", "b.f16", "c.bf16", "d.i32", "e.scalar", "f.empty", "g.odd"});
  for (const auto& [name, want] : tensors) {
    CAPTURE(name);
    auto got = file->get(name);
    REQUIRE(got);
    CHECK(same_bytes(*got, want));
  }
  CHECK(file->get("a.f32")->to_f32_vector() == values);
  CHECK(file->get("c.bf16")->to_f32_vector() == values);  // all exact in bf16
  CHECK(std::memcmp(file->get("d.i32")->data(), ids.data(), 16) == 0);

  // A single-file checkpoint directory.
  auto ckpt = Checkpoint::open(dir.path.string());
  REQUIRE(ckpt);
  CHECK(ckpt->names().size() == tensors.size());
  CHECK(*ckpt->file_of("b.f16") == "model.safetensors");
  CHECK(ckpt->get("b.f16", {3, 2}));
  CHECK(mentions(error_of(ckpt->get("b.f16", {2, 3})), "b.f16: expected shape [2, 3], got [3, 2]"));
  const std::string missing = error_of(ckpt->get("z"));
  CHECK(mentions(missing, "'z'"));
  CHECK(mentions(missing, "model.safetensors"));
}

TEST_CASE("writer refuses what it cannot write") {
  TempDir dir;
  const Tensor t = Tensor::zeros(DType::f32, {2});
  CHECK(mentions(write_safetensors(dir.file("x.safetensors"), {{"w", t}, {"w", t}}).message(), "'w'"));
  CHECK(mentions(write_safetensors(dir.file("x.safetensors"), {{"__metadata__", t}}).message(), "__metadata__"));
  CHECK_FALSE(write_safetensors(dir.file("no/such/dir/x.safetensors"), {{"w", t}}).is_ok());
}

TEST_CASE("hostile safetensors files are refused with the name of what is wrong") {
  TempDir dir;
  const std::string path = dir.file("bad.safetensors");

  SUBCASE("truncated file: the header promises more data than is present") {
    REQUIRE(write_safetensors(path, {{"w1", Tensor::zeros(DType::f32, {4})}, {"w2", Tensor::zeros(DType::f32, {16})}})
                .is_ok());
    fs::resize_file(path, fs::file_size(path) - 10);
    const std::string msg = error_of(SafetensorsFile::open(path));
    CHECK(mentions(msg, "'w2'"));
    CHECK(mentions(msg, "truncated"));
    CHECK(mentions(msg, path));
  }
  SUBCASE("header length larger than the file") {
    write_raw(path, 1000, "{}", 16);
    const std::string msg = error_of(SafetensorsFile::open(path));
    CHECK(mentions(msg, "header length 1000"));
    CHECK(mentions(msg, path));
  }
  SUBCASE("header length near 2^64 does not overflow") {
    write_raw(path, ~uint64_t(0) - 3, "{}", 16);
    CHECK(mentions(error_of(SafetensorsFile::open(path)), "header length"));
  }
  SUBCASE("shorter than the length prefix") {
    write_text(path, "abc");
    CHECK(mentions(error_of(SafetensorsFile::open(path)), "too short"));
  }
  SUBCASE("header is not JSON") {
    write_raw(path, "{\"w\": {\"dtype\": ", 0);
    CHECK(mentions(error_of(SafetensorsFile::open(path)), "not valid JSON"));
  }
  SUBCASE("header is not an object") {
    write_raw(path, "[1, 2]", 0);
    CHECK(mentions(error_of(SafetensorsFile::open(path)), "not a JSON object"));
  }
  SUBCASE("data_offsets out of range") {
    write_raw(path, R"({"w.range": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})", 8);
    const std::string msg = error_of(SafetensorsFile::open(path));
    CHECK(mentions(msg, "'w.range'"));
    CHECK(mentions(msg, "outside the data section"));
  }
  SUBCASE("data_offsets reversed") {
    write_raw(path, R"({"w.rev": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}})", 8);
    CHECK(mentions(error_of(SafetensorsFile::open(path)), "'w.rev'"));
  }
  SUBCASE("negative data_offsets") {
    write_raw(path, R"({"w.neg": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})", 8);
    CHECK(mentions(error_of(SafetensorsFile::open(path)), "'w.neg'"));
  }
  SUBCASE("data_offsets inconsistent with shape") {
    write_raw(path, R"({"w.short": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}})", 32);
    const std::string msg = error_of(SafetensorsFile::open(path));
    CHECK(mentions(msg, "'w.short'"));
    CHECK(mentions(msg, "needs 24"));
  }
  SUBCASE("shape whose byte size overflows") {
    write_raw(path, R"({"w.huge": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})", 8);
    CHECK(mentions(error_of(SafetensorsFile::open(path)), "'w.huge'"));
  }
  SUBCASE("negative extent") {
    write_raw(path, R"({"w.negdim": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}})", 8);
    CHECK(mentions(error_of(SafetensorsFile::open(path)), "'w.negdim'"));
  }
  SUBCASE("unsupported dtypes") {
    for (const char* dtype : {"F64", "I64", "U8", "F8_E4M3", "BOOL"}) {
      CAPTURE(dtype);
      write_raw(path, std::string(R"({"w.odd": {"dtype": ")") + dtype + R"(", "shape": [1], "data_offsets": [0, 1]}})",
                8);
      const std::string msg = error_of(SafetensorsFile::open(path));
      CHECK(mentions(msg, "'w.odd'"));
      CHECK(mentions(msg, std::string("dtype ") + dtype));
    }
  }
  SUBCASE("missing dtype") {
    write_raw(path, R"({"w.nodtype": {"shape": [1], "data_offsets": [0, 4]}})", 8);
    CHECK(mentions(error_of(SafetensorsFile::open(path)), "'w.nodtype'"));
  }
  SUBCASE("__metadata__ is ignored") {
    write_raw(path,
              R"({"__metadata__": {"format": "pt"}, "w": {"dtype": "I32", "shape": [2], "data_offsets": [0, 8]}})", 8);
    auto file = SafetensorsFile::open(path);
    REQUIRE(file);
    CHECK(file->names() == std::vector<std::string>{"w"});
  }
  SUBCASE("missing tensor") {
    write_raw(path, R"({"w": {"dtype": "I32", "shape": [2], "data_offsets": [0, 8]}})", 8);
    auto file = SafetensorsFile::open(path);
    REQUIRE(file);
    const std::string msg = error_of(file->get("v"));
    CHECK(mentions(msg, "'v'"));
    CHECK(mentions(msg, path));
  }
  SUBCASE("no such file") {
    CHECK(mentions(error_of(SafetensorsFile::open(dir.file("absent.safetensors"))), "absent.safetensors"));
  }
}

TEST_CASE("hostile checkpoint directories are refused with the name of what is wrong") {
  TempDir dir;
  const std::string index = dir.file("model.safetensors.index.json");
  REQUIRE(write_safetensors(dir.file("shard-a.safetensors"), {{"w.a", Tensor::zeros(DType::bf16, {2, 2})}}).is_ok());

  SUBCASE("a working two-entry index") {
    write_text(index, R"({"metadata": {}, "weight_map": {"w.a": "shard-a.safetensors"}})");
    auto ckpt = Checkpoint::open(dir.path.string());
    REQUIRE_MESSAGE(ckpt.has_value(), (ckpt ? "" : ckpt.error().message));
    CHECK(ckpt->names() == std::vector<std::string>{"w.a"});
  }
  SUBCASE("index naming a missing shard file") {
    write_text(index, R"({"weight_map": {"w.a": "shard-a.safetensors", "w.b": "shard-b.safetensors"}})");
    const std::string msg = error_of(Checkpoint::open(dir.path.string()));
    CHECK(mentions(msg, "shard-b.safetensors"));
    CHECK(mentions(msg, "model.safetensors.index.json"));
    CHECK(mentions(msg, "'w.b'"));
  }
  SUBCASE("index mapping a tensor to a shard that lacks it") {
    write_text(index, R"({"weight_map": {"w.z": "shard-a.safetensors"}})");
    const std::string msg = error_of(Checkpoint::open(dir.path.string()));
    CHECK(mentions(msg, "'w.z'"));
    CHECK(mentions(msg, "shard-a.safetensors"));
  }
  SUBCASE("index naming a file outside the directory") {
    write_text(index, R"({"weight_map": {"w.a": "../shard-a.safetensors"}})");
    CHECK(mentions(error_of(Checkpoint::open(dir.path.string())), "../shard-a.safetensors"));
  }
  SUBCASE("index without weight_map") {
    write_text(index, R"({"metadata": {}})");
    CHECK(mentions(error_of(Checkpoint::open(dir.path.string())), "weight_map"));
  }
  SUBCASE("index that is not JSON") {
    write_text(index, "{weight_map");
    CHECK(mentions(error_of(Checkpoint::open(dir.path.string())), "model.safetensors.index.json"));
  }
  SUBCASE("a corrupt shard names the shard") {
    write_raw(dir.file("shard-c.safetensors"), 999, "{}", 0);
    write_text(index, R"({"weight_map": {"w.c": "shard-c.safetensors"}})");
    CHECK(mentions(error_of(Checkpoint::open(dir.path.string())), "shard-c.safetensors"));
  }
}

TEST_CASE("empty or missing checkpoint directory") {
  TempDir dir;
  const std::string empty = error_of(Checkpoint::open(dir.path.string()));
  CHECK(mentions(empty, dir.path.string()));
  CHECK(mentions(empty, "model.safetensors"));
  const std::string absent = (dir.path / "nowhere").string();
  CHECK(mentions(error_of(Checkpoint::open(absent)), absent));
}
