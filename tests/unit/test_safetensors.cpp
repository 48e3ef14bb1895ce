#include <gtest/gtest.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model/checkpoint.h"
#include "model/safetensors.h"
#include "model/safetensors_writer.h"
#include "util/error.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace ds;
using namespace ds::model;

namespace {

// Deterministic content: byte i of tensor `name`.
uint8_t pattern(const std::string& name, uint64_t i) {
  uint64_t h = std::hash<std::string>()(name) ^ (i * 0x9E3779B97F4A7C15ull);
  return uint8_t(h >> 29);
}

void fill_pattern(const TensorSpec& s, uint8_t* out, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i) out[i] = pattern(s.name, i);
}

void expect_pattern(const TensorInfo& t) {
  for (uint64_t i = 0; i < t.nbytes; ++i)
    if (t.data[i] != pattern(t.name, i)) {
      ADD_FAILURE() << t.name << " differs at byte " << i;
      return;
    }
}

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_all(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

// A safetensors file from raw header text and a data buffer of `data_size` bytes.
std::string raw_file(const std::string& header, uint64_t data_size, uint64_t declared_len = UINT64_MAX) {
  uint64_t n = declared_len == UINT64_MAX ? header.size() : declared_len;
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((n >> (8 * i)) & 0xff);
  return out + header + std::string(data_size, '\x11');
}

std::string error_of_bytes(const std::string& bytes, const std::string& label = "test.safetensors") {
  try {
    parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), label);
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

#define EXPECT_MENTIONS(msg, ...)                                                                   \
  do {                                                                                              \
    std::string m_ = (msg);                                                                         \
    for (const char* part : {__VA_ARGS__})                                                          \
      EXPECT_NE(m_.find(part), std::string::npos) << "message: " << m_ << "\n  lacks: " << part; \
  } while (0)

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           (std::string("ds_test_st_") + std::to_string(getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string open_error(const std::string& dir) {
    try {
      Checkpoint::open(dir);
    } catch (const Error& e) {
      return e.what();
    }
    ADD_FAILURE() << "no error opening " << dir;
    return "";
  }

  fs::path dir_;
};

std::vector<TensorSpec> every_dtype_plan() {
  return {{"model.embed.weight", DType::BF16, {7, 5}},   {"a.f32", DType::F32, {3, 4, 2}},
          {"b.f16", DType::F16, {9}},                     {"c.fp8", DType::F8_E4M3, {130, 3}},
          {"d.i32", DType::I32, {2, 2}},                  {"e.i64", DType::I64, {3}},
          {"f.u8", DType::U8, {17}},                      {"g.empty", DType::BF16, {0, 5}},
          {"h.scalar", DType::F32, {}}};
}

}  // namespace

TEST_F(SafetensorsTest, RoundTripEveryDtype) {
  auto plan = every_dtype_plan();
  fs::path file = dir_ / "model.safetensors";
  write_safetensors(file.string(), plan, fill_pattern);
  EXPECT_FALSE(fs::exists(dir_ / "model.safetensors.tmp"));

  // Header layout: 8-aligned data start, HF metadata.
  std::string bytes = read_all(file);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
  json header = json::parse(bytes.substr(8, n));
  EXPECT_EQ(header["__metadata__"], (json{{"format", "pt"}}));

  SafetensorsFile f = SafetensorsFile::open(file.string());
  ASSERT_EQ(f.tensors().size(), plan.size());
  for (const TensorSpec& s : plan) {
    const TensorInfo* t = nullptr;
    for (const TensorInfo& x : f.tensors())
      if (x.name == s.name) t = &x;
    ASSERT_NE(t, nullptr) << s.name;
    EXPECT_EQ(t->dtype, s.dtype) << s.name;
    EXPECT_EQ(t->shape, s.shape) << s.name;
    EXPECT_EQ(t->nbytes, s.nbytes()) << s.name;
    EXPECT_EQ(t->file, file.string());
    expect_pattern(*t);
  }
  // Sorted by data offset, in plan order.
  for (size_t i = 1; i < f.tensors().size(); ++i) EXPECT_LE(f.tensors()[i - 1].data, f.tensors()[i].data);

  // The same file through Checkpoint (single-file layout), and a moved SafetensorsFile.
  Checkpoint ck = Checkpoint::open(dir_.string());
  EXPECT_EQ(ck.num_files(), 1u);
  EXPECT_EQ(ck.names().size(), plan.size());
  uint64_t total = 0;
  for (const TensorSpec& s : plan) total += s.nbytes();
  EXPECT_EQ(ck.total_bytes(), total);
  EXPECT_EQ(ck.get("g.empty").nbytes, 0u);
  EXPECT_EQ(ck.get("g.empty").numel(), 0);
  EXPECT_EQ(ck.get("h.scalar").numel(), 1);
  expect_pattern(ck.get("c.fp8"));

  ck.advise_sequential();
  for (const std::string& name : ck.names()) prefetch(ck.get(name));
  expect_pattern(ck.get("c.fp8"));

  SafetensorsFile moved = std::move(f);
  expect_pattern(moved.tensors()[0]);
  Checkpoint ck2 = std::move(ck);
  expect_pattern(ck2.get("model.embed.weight"));
}

TEST_F(SafetensorsTest, ShardedWithIndex) {
  std::vector<TensorSpec> plan;
  for (int i = 0; i < 12; ++i)
    plan.push_back({"model.layers." + std::to_string(i) + ".w", i % 2 ? DType::BF16 : DType::F8_E4M3,
                    {int64_t(10 + i), 16}});
  plan.push_back({"big", DType::F32, {100, 10}});  // larger than a shard: gets its own
  write_sharded_checkpoint(dir_.string(), plan, fill_pattern, 700, false);

  json index = json::parse(read_all(dir_ / "model.safetensors.index.json"));
  uint64_t total = 0;
  for (const TensorSpec& s : plan) total += s.nbytes();
  EXPECT_EQ(index["metadata"]["total_size"], total);
  EXPECT_EQ(index["weight_map"].size(), plan.size());

  size_t shards = 0;
  for (const auto& e : fs::directory_iterator(dir_)) {
    if (e.path().extension() == ".tmp") ADD_FAILURE() << "left over " << e.path();
    if (e.path().extension() == ".safetensors") {
      ++shards;
      EXPECT_LE(fs::file_size(e.path()), 700u + 4096u);
    }
  }
  EXPECT_GE(shards, 3u);
  char last[64];
  std::snprintf(last, sizeof last, "model-%05zu-of-%05zu.safetensors", shards, shards);
  EXPECT_EQ(index["weight_map"]["big"], last);

  Checkpoint ck = Checkpoint::open(dir_.string());
  EXPECT_EQ(ck.num_files(), shards);
  EXPECT_EQ(ck.total_bytes(), total);
  std::vector<std::string> names = ck.names();
  EXPECT_EQ(names.size(), plan.size());
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  for (const TensorSpec& s : plan) {
    const TensorInfo& t = ck.get(s.name);
    EXPECT_EQ(t.shape, s.shape);
    EXPECT_EQ(t.dtype, s.dtype);
    EXPECT_EQ(fs::path(t.file).filename().string(), index["weight_map"][s.name].get<std::string>());
    expect_pattern(t);
  }
  EXPECT_EQ(ck.find("nope"), nullptr);
  std::string dir = dir_.string();
  EXPECT_MENTIONS(
      [&] {
        try {
          ck.get("nope");
        } catch (const Error& e) {
          return std::string(e.what());
        }
        return std::string();
      }(),
      "tensor 'nope' not found in checkpoint", dir.c_str());
}

TEST_F(SafetensorsTest, ManyShardsAndEmptyPlan) {
  std::vector<TensorSpec> plan;
  for (int i = 0; i < 20; ++i) plan.push_back({fmt::format("t{}", i), DType::U8, {8}});
  write_sharded_checkpoint(dir_.string(), plan, fill_pattern, 8, true);  // one tensor per shard
  Checkpoint ck = Checkpoint::open(dir_.string());                       // >= 8 files: progress line
  EXPECT_EQ(ck.num_files(), 20u);
  EXPECT_EQ(ck.total_bytes(), 160u);

  fs::path empty = dir_ / "empty";
  write_sharded_checkpoint(empty.string(), {}, fill_pattern, 1000, false);
  EXPECT_EQ(Checkpoint::open(empty.string()).names().size(), 0u);
}

TEST_F(SafetensorsTest, DirectoryWithoutIndex) {
  write_safetensors((dir_ / "a.safetensors").string(), {{"x", DType::F32, {4}}}, fill_pattern);
  write_safetensors((dir_ / "b.safetensors").string(), {{"y", DType::BF16, {2, 3}}}, fill_pattern);
  Checkpoint ck = Checkpoint::open(dir_.string());
  EXPECT_EQ(ck.num_files(), 2u);
  EXPECT_EQ(ck.names(), (std::vector<std::string>{"x", "y"}));
  expect_pattern(ck.get("y"));

  // The same tensor in two files.
  write_safetensors((dir_ / "c.safetensors").string(), {{"x", DType::F32, {4}}}, fill_pattern);
  EXPECT_MENTIONS(open_error(dir_.string()), "'x'", "a.safetensors", "c.safetensors");
}

TEST_F(SafetensorsTest, WriterRefusesBadPlansAndCleansUp) {
  fs::path file = dir_ / "w.safetensors";
  EXPECT_THROW(write_safetensors(file.string(), {{"a", DType::F32, {1}}, {"a", DType::F32, {2}}}, fill_pattern),
               Error);
  EXPECT_THROW(write_safetensors(file.string(), {{"a", DType::F32, {-1}}}, fill_pattern), Error);
  EXPECT_THROW(write_safetensors(file.string(), {{"__metadata__", DType::F32, {1}}}, fill_pattern), Error);
  auto throwing = [](const TensorSpec& s, uint8_t*, uint64_t) {
    if (s.name == "b") throw Error("fill failed");
  };
  EXPECT_THROW(write_safetensors(file.string(), {{"a", DType::F32, {1}}, {"b", DType::F32, {1}}}, throwing), Error);
  EXPECT_FALSE(fs::exists(file));
  EXPECT_FALSE(fs::exists(dir_ / "w.safetensors.tmp"));
}

// ---- corrupted files: a clear error naming the file and the tensor, never a crash ----

TEST_F(SafetensorsTest, TruncatedFile) {
  fs::path file = dir_ / "model.safetensors";
  write_safetensors(file.string(), {{"w", DType::F32, {64}}}, fill_pattern);
  fs::resize_file(file, fs::file_size(file) - 10);
  EXPECT_MENTIONS(open_error(dir_.string()), "'w'", "model.safetensors", "truncated");

  // Cut inside the header.
  fs::resize_file(file, 20);
  EXPECT_MENTIONS(open_error(dir_.string()), "model.safetensors", "exceeds the file size");
  // Shorter than the length prefix; and empty.
  fs::resize_file(file, 5);
  EXPECT_MENTIONS(open_error(dir_.string()), "model.safetensors", "too small");
  fs::resize_file(file, 0);
  EXPECT_MENTIONS(open_error(dir_.string()), "model.safetensors", "too small");
}

TEST_F(SafetensorsTest, HeaderLengthHuge) {
  EXPECT_MENTIONS(error_of_bytes(raw_file("{}", 0, uint64_t(1) << 62)), "test.safetensors", "absurd");
  EXPECT_MENTIONS(error_of_bytes(raw_file("{}", 0, UINT64_MAX - 1)), "test.safetensors", "absurd");
  EXPECT_MENTIONS(error_of_bytes(raw_file("{}", 0, 1000)), "test.safetensors", "exceeds the file size");
}

TEST_F(SafetensorsTest, HeaderNotJson) {
  EXPECT_MENTIONS(error_of_bytes(raw_file("{\"a\": [1, 2", 0)), "test.safetensors", "not valid JSON");
  EXPECT_MENTIONS(error_of_bytes(raw_file("", 0)), "test.safetensors", "not valid JSON");
  EXPECT_MENTIONS(error_of_bytes(raw_file("\xff\xfe", 0)), "test.safetensors", "not valid JSON");
  EXPECT_MENTIONS(error_of_bytes(raw_file("[1,2]", 0)), "test.safetensors", "object");
  EXPECT_MENTIONS(error_of_bytes(raw_file("{\"w\": [[[[1]]]]}", 0)), "test.safetensors", "nests");
  EXPECT_MENTIONS(error_of_bytes(raw_file(R"({"w": 5})", 0)), "test.safetensors", "'w'", "object");
  EXPECT_MENTIONS(error_of_bytes(raw_file(R"({"__metadata__": {"format": 1}})", 0)), "__metadata__", "format");
  EXPECT_MENTIONS(error_of_bytes(raw_file(R"({"__metadata__": []})", 0)), "__metadata__");
  // Padding with spaces (what writers do) is fine; an empty header too.
  EXPECT_TRUE(parse_safetensors(reinterpret_cast<const uint8_t*>(raw_file("{}      ", 0).data()), 16, "x").empty());
}

TEST_F(SafetensorsTest, OffsetsPastEnd) {
  std::string h = R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})";
  EXPECT_MENTIONS(error_of_bytes(raw_file(h, 16)), "test.safetensors", "'w'", "[8, 24]", "past the end");
  std::string ok = raw_file(h, 24);
  EXPECT_EQ(parse_safetensors(reinterpret_cast<const uint8_t*>(ok.data()), ok.size(), "x").size(), 1u);
  std::string rev = R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [9, 8]}})";
  EXPECT_MENTIONS(error_of_bytes(raw_file(rev, 16)), "'w'", "[9, 8]");
  for (const char* bad : {R"([8])", R"([-1, 15])", R"([0.5, 16])", R"("0-16")", R"([0, 16, 32])"}) {
    std::string hb = std::string(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": )") + bad + "}}";
    EXPECT_MENTIONS(error_of_bytes(raw_file(hb, 16)), "'w'", "data_offsets");
  }
}

TEST_F(SafetensorsTest, OverlappingTensors) {
  std::string h = R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                      "b": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]},
                      "z": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}})";
  EXPECT_MENTIONS(error_of_bytes(raw_file(h, 32)), "test.safetensors", "'a'", "'b'", "overlap");
  // A tensor inside another.
  std::string inside = R"({"a": {"dtype": "U8", "shape": [32], "data_offsets": [0, 32]},
                           "b": {"dtype": "U8", "shape": [4], "data_offsets": [8, 12]}})";
  EXPECT_MENTIONS(error_of_bytes(raw_file(inside, 32)), "'a'", "'b'", "overlap");
  // Zero-size tensors may sit anywhere; adjacent ones do not overlap.
  std::string fine = R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                         "b": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]},
                         "z": {"dtype": "F32", "shape": [0, 3], "data_offsets": [4, 4]}})";
  std::string bytes = raw_file(fine, 24);
  EXPECT_EQ(parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "x").size(), 3u);
}

TEST_F(SafetensorsTest, WrongBytesForShape) {
  std::string h = R"({"w": {"dtype": "BF16", "shape": [3, 3], "data_offsets": [0, 16]}})";
  EXPECT_MENTIONS(error_of_bytes(raw_file(h, 16)), "test.safetensors", "'w'", "18", "[0, 16]");
}

TEST_F(SafetensorsTest, BadDtypeAndShape) {
  auto entry = [](const std::string& dtype, const std::string& shape, const std::string& off) {
    return R"({"w": {"dtype": )" + dtype + R"(, "shape": )" + shape + R"(, "data_offsets": )" + off + "}}";
  };
  EXPECT_MENTIONS(error_of_bytes(raw_file(entry(R"("Q4_K")", "[4]", "[0, 4]"), 4)), "test.safetensors", "'w'",
                  "Q4_K");
  EXPECT_MENTIONS(error_of_bytes(raw_file(entry("5", "[4]", "[0, 4]"), 4)), "'w'", "dtype");
  EXPECT_MENTIONS(error_of_bytes(raw_file(entry(R"("U8")", "[-4]", "[0, 4]"), 4)), "'w'", "shape");
  EXPECT_MENTIONS(error_of_bytes(raw_file(entry(R"("U8")", "[4.0]", "[0, 4]"), 4)), "'w'", "shape");
  EXPECT_MENTIONS(error_of_bytes(raw_file(entry(R"("U8")", "4", "[0, 4]"), 4)), "'w'", "shape");
  EXPECT_MENTIONS(error_of_bytes(raw_file(entry(R"("U8")", "[1099511627776, 1099511627776]", "[0, 4]"), 4)),
                  "'w'", "too many elements");
  EXPECT_MENTIONS(error_of_bytes(raw_file(entry(R"("I64")", "[4611686018427387904]", "[0, 4]"), 4)), "'w'",
                  "too large");
  std::string missing = R"({"w": {"dtype": "U8", "data_offsets": [0, 4]}})";
  EXPECT_MENTIONS(error_of_bytes(raw_file(missing, 4)), "'w'", "shape");
  std::string extra = R"({"w": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4], "stride": [1]}})";
  EXPECT_MENTIONS(error_of_bytes(raw_file(extra, 4)), "'w'", "stride");
  std::string dup = R"({"w": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                        "w": {"dtype": "U8", "shape": [4], "data_offsets": [4, 8]}})";
  EXPECT_MENTIONS(error_of_bytes(raw_file(dup, 8)), "test.safetensors", "'w'", "twice");
}

TEST_F(SafetensorsTest, DuplicatedTensorAcrossShards) {
  write_sharded_checkpoint(dir_.string(), {{"a", DType::F32, {4}}, {"b", DType::F32, {4}}}, fill_pattern, 16, false);
  // Put "a" into the second shard too, behind the index's back.
  write_safetensors((dir_ / "model-00002-of-00002.safetensors").string(),
                    {{"b", DType::F32, {4}}, {"a", DType::F32, {4}}}, fill_pattern);
  EXPECT_MENTIONS(open_error(dir_.string()), "'a'", "model-00001-of-00002.safetensors",
                  "model-00002-of-00002.safetensors");
}

TEST_F(SafetensorsTest, IndexProblems) {
  write_sharded_checkpoint(dir_.string(),
                           {{"a", DType::F32, {4}}, {"b", DType::F32, {4}}, {"c", DType::F32, {4}}, {"d", DType::F32, {4}}},
                           fill_pattern, 32, false);
  fs::path index = dir_ / "model.safetensors.index.json";
  json j = json::parse(read_all(index));

  // A shard that does not exist.
  json k = j;
  k["weight_map"]["c"] = "model-00003-of-00003.safetensors";
  write_all(index, k.dump());
  EXPECT_MENTIONS(open_error(dir_.string()), "model-00003-of-00003.safetensors", "does not exist");

  // A tensor that its shard lacks.
  k = j;
  k["weight_map"]["e"] = "model-00001-of-00002.safetensors";
  write_all(index, k.dump());
  EXPECT_MENTIONS(open_error(dir_.string()), "'e'", "model-00001-of-00002.safetensors", "lacks");

  // A tensor listed for the wrong shard.
  k = j;
  k["weight_map"]["a"] = "model-00002-of-00002.safetensors";
  write_all(index, k.dump());
  EXPECT_MENTIONS(open_error(dir_.string()), "'a'", "model-00002-of-00002.safetensors",
                  "model-00001-of-00002.safetensors");

  // Shard names that leave the directory; malformed index files.
  k = j;
  k["weight_map"]["a"] = "../x.safetensors";
  write_all(index, k.dump());
  EXPECT_MENTIONS(open_error(dir_.string()), "'a'", "../x.safetensors");
  write_all(index, "{\"weight_map\": ");
  EXPECT_MENTIONS(open_error(dir_.string()), "model.safetensors.index.json", "JSON");
  write_all(index, R"({"metadata": {}})");
  EXPECT_MENTIONS(open_error(dir_.string()), "model.safetensors.index.json", "weight_map");
  write_all(index, R"({"weight_map": {"a": 3}})");
  EXPECT_MENTIONS(open_error(dir_.string()), "model.safetensors.index.json", "'a'");

  write_all(index, j.dump());
  EXPECT_EQ(Checkpoint::open(dir_.string()).names().size(), 4u);
}

TEST_F(SafetensorsTest, MissingDirectoryOrFiles) {
  EXPECT_MENTIONS(open_error((dir_ / "absent").string()), "absent", "does not exist");
  EXPECT_MENTIONS(open_error(dir_.string()), "no .safetensors files");
  EXPECT_THROW(SafetensorsFile::open((dir_ / "absent.safetensors").string()), Error);
  EXPECT_THROW(SafetensorsFile::open(dir_.string()), Error);
}
