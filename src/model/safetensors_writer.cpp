#include "model/safetensors_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "util/error.h"
#include "util/progress.h"

namespace ds::model {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Writes to path + ".tmp" and renames on commit(), so a reader never sees a half-written file
// under the final name; an abandoned temp file is removed. (No fsync: these are generated
// files, and a crash mid-write only has to leave no file that looks complete.)
class AtomicFile {
 public:
  explicit AtomicFile(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("cannot create {}: {}", tmp_, std::strerror(errno));
  }
  ~AtomicFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, uint64_t n) {
    auto* p = static_cast<const uint8_t*>(data);
    while (n > 0) {
      ssize_t w = ::write(fd_, p, std::min<uint64_t>(n, 1u << 30));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) fail("writing {}: {}", tmp_, std::strerror(errno));
      p += w;
      n -= uint64_t(w);
    }
  }
  void commit() {
    int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) fail("writing {}: {}", tmp_, std::strerror(errno));
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0)
      fail("cannot rename {} to {}: {}", tmp_, path_, std::strerror(errno));
    committed_ = true;
  }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

// The header bytes (length prefix included) for `specs` laid out back to back in order.
std::string make_header(const std::vector<const TensorSpec*>& specs) {
  json h = json::object();
  h["__metadata__"] = {{"format", "pt"}};
  uint64_t offset = 0;
  for (const TensorSpec* s : specs) {
    uint64_t n = s->nbytes();
    h[s->name] = {{"dtype", std::string(dtype_name(s->dtype))}, {"shape", s->shape}, {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string text = h.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data starts 8-aligned, as HF's writer does
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((uint64_t(text.size()) >> (8 * i)) & 0xff);
  return out + text;
}

// Two buffers, each growing to the largest tensor it has held, used in turn: one tensor is written
// from one while the next is filled into the other.
struct Scratch {
  std::unique_ptr<uint8_t[]> data[2];
  uint64_t size[2] = {0, 0};
  int next = 0;
  uint8_t* get(uint64_t n) {
    const int k = next;
    next ^= 1;
    if (n > size[k]) {
      data[k].reset();  // free before allocating the bigger one
      data[k].reset(new uint8_t[n]);
      size[k] = n;
    }
    return data[k].get();
  }
};

// Filling (OpenMP-parallel in make-model) and writing overlap: tensor i is written on a second
// thread while tensor i + 1 is filled.
void write_file(const std::string& path, const std::vector<const TensorSpec*>& specs, const TensorFill& fill,
                Scratch& scratch, Progress* progress) {
  AtomicFile out(path);
  std::string header = make_header(specs);
  out.write(header.data(), header.size());
  std::future<void> pending;  // the previous tensor's write; destroyed (so waited for) before `out`
  for (const TensorSpec* s : specs) {
    uint64_t n = s->nbytes();
    uint8_t* buf = scratch.get(n);  // not the buffer `pending` writes from
    fill(*s, buf, n);
    if (pending.valid()) pending.get();
    pending = std::async(std::launch::async, [&out, buf, n] { out.write(buf, n); });
    if (progress) progress->add(n);
  }
  if (pending.valid()) pending.get();
  out.commit();
}

void check_unique_names(const std::vector<TensorSpec>& plan) {
  std::set<std::string_view> seen;
  for (const TensorSpec& s : plan) {
    if (s.name.empty()) fail("safetensors writer: a tensor has an empty name");
    if (s.name == "__metadata__") fail("safetensors writer: '__metadata__' is not a tensor name");
    if (!seen.insert(s.name).second) fail("safetensors writer: tensor '{}' is in the plan twice", s.name);
  }
}

}  // namespace

uint64_t TensorSpec::nbytes() const {
  uint64_t n = dtype_size(dtype);
  for (int64_t d : shape) {
    if (d < 0) fail("tensor '{}': negative dimension {}", name, d);
    if (__builtin_mul_overflow(n, uint64_t(d), &n)) fail("tensor '{}': shape too large", name);
  }
  return n;
}

void write_safetensors(const std::string& path, const std::vector<TensorSpec>& plan, const TensorFill& fill) {
  check_unique_names(plan);
  std::vector<const TensorSpec*> specs;
  for (const TensorSpec& s : plan) specs.push_back(&s);
  Scratch scratch;
  write_file(path, specs, fill, scratch, nullptr);
}

void write_sharded_checkpoint(const std::string& dir, const std::vector<TensorSpec>& plan, const TensorFill& fill,
                              uint64_t max_shard_bytes, bool show_progress) {
  check_unique_names(plan);
  if (max_shard_bytes == 0) fail("safetensors writer: max_shard_bytes must be > 0");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("cannot create directory {}: {}", dir, ec.message());

  // Greedy: consecutive tensors while they fit.
  std::vector<std::vector<const TensorSpec*>> shards;
  uint64_t in_shard = 0, total = 0;
  for (const TensorSpec& s : plan) {
    uint64_t n = s.nbytes();
    if (shards.empty() || (!shards.back().empty() && in_shard + n > max_shard_bytes)) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(&s);
    in_shard += n;
    total += n;
  }
  if (shards.empty()) shards.emplace_back();  // an empty checkpoint is still one valid file

  std::unique_ptr<Progress> progress;
  if (show_progress) progress = std::make_unique<Progress>("writing " + dir, total, "B");
  json weight_map = json::object();
  Scratch scratch;
  for (size_t i = 0; i < shards.size(); ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
    write_file((fs::path(dir) / name).string(), shards[i], fill, scratch, progress.get());
    for (const TensorSpec* s : shards[i]) weight_map[s->name] = name;
  }
  json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  AtomicFile idx((fs::path(dir) / "model.safetensors.index.json").string());
  std::string text = index.dump(2) + "\n";
  idx.write(text.data(), text.size());
  idx.commit();
}

}  // namespace ds::model
