#include "model/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "util/error.h"
#include "util/progress.h"

namespace ds::model {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Above this many files, opening shows a progress line (each header read may hit a cold disk).
constexpr size_t kProgressMinFiles = 8;

// weight_map of model.safetensors.index.json: tensor name -> shard file name.
std::map<std::string, std::string> read_weight_map(const std::string& index_path) {
  std::ifstream in(index_path);
  if (!in) fail("cannot open {}", index_path);
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", index_path, e.what());
  }
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    fail("{}: missing the 'weight_map' object", index_path);
  std::map<std::string, std::string> map;
  for (auto& [name, shard] : j["weight_map"].items()) {
    if (!shard.is_string()) fail("{}: weight_map entry of tensor '{}' is not a file name", index_path, name);
    std::string s = shard.get<std::string>();
    fs::path p(s);
    // Shards live in the checkpoint directory; refuse paths that would leave it.
    bool escapes = s.empty() || p.is_absolute() ||
                   std::any_of(p.begin(), p.end(), [](const fs::path& part) { return part == ".."; });
    if (escapes) fail("{}: tensor '{}' maps to an invalid shard name \"{}\"", index_path, name, s);
    map.emplace(name, std::move(s));
  }
  return map;
}

// Opens the files, with a progress line when there are many.
std::vector<SafetensorsFile> open_files(const std::vector<std::string>& paths) {
  std::unique_ptr<Progress> progress;
  if (paths.size() >= kProgressMinFiles)
    progress = std::make_unique<Progress>("reading checkpoint headers", paths.size(), "files");
  std::vector<SafetensorsFile> files;
  files.reserve(paths.size());
  for (const std::string& p : paths) {
    files.push_back(SafetensorsFile::open(p));
    if (progress) progress->add(1);
  }
  return files;
}

}  // namespace

void Checkpoint::add_file(SafetensorsFile f) {
  files_.push_back(std::move(f));
  for (const TensorInfo& t : files_.back().tensors()) {
    auto [it, inserted] = index_.emplace(t.name, &t);
    if (!inserted)
      fail("checkpoint {}: tensor '{}' is in two files: {} and {}", dir_, t.name, it->second->file, t.file);
    total_bytes_ += t.nbytes;
  }
}

Checkpoint Checkpoint::open(const std::string& dir) {
  Checkpoint ck;
  ck.dir_ = dir;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail("checkpoint directory {} does not exist", dir);

  fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  fs::path single = fs::path(dir) / "model.safetensors";
  if (fs::exists(index_path, ec)) {
    std::map<std::string, std::string> weight_map = read_weight_map(index_path.string());
    std::set<std::string> shards;
    for (auto& [name, shard] : weight_map) shards.insert(shard);
    std::vector<std::string> paths;
    for (const std::string& s : shards) {
      fs::path p = fs::path(dir) / s;
      if (!fs::is_regular_file(p, ec))
        fail("checkpoint {}: shard '{}' listed in {} does not exist", dir, s, index_path.filename().string());
      paths.push_back(p.string());
    }
    for (SafetensorsFile& f : open_files(paths)) ck.add_file(std::move(f));
    for (auto& [name, shard] : weight_map) {
      std::string want = (fs::path(dir) / shard).string();
      const TensorInfo* t = ck.find(name);
      if (!t) fail("checkpoint {}: tensor '{}' is listed in the index for shard '{}' but that shard lacks it", dir,
                   name, shard);
      if (t->file != want)
        fail("checkpoint {}: tensor '{}' is listed in the index for shard '{}' but is in {}", dir, name, shard,
             t->file);
    }
  } else if (fs::exists(single, ec)) {
    ck.add_file(SafetensorsFile::open(single.string()));
  } else {
    std::vector<std::string> paths;
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.path().extension() == ".safetensors" && e.is_regular_file(ec)) paths.push_back(e.path().string());
    if (ec) fail("cannot list checkpoint directory {}: {}", dir, ec.message());
    if (paths.empty())
      fail("checkpoint directory {} has no .safetensors files (serve --load-format dummy makes random weights of its "
           "config.json)",
           dir);
    std::sort(paths.begin(), paths.end());
    for (SafetensorsFile& f : open_files(paths)) ck.add_file(std::move(f));
  }
  return ck;
}

const TensorInfo* Checkpoint::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

const TensorInfo& Checkpoint::get(const std::string& name) const {
  const TensorInfo* t = find(name);
  if (!t) fail("tensor '{}' not found in checkpoint {}", name, dir_);
  return *t;
}

void Checkpoint::advise_sequential() const {
  for (const SafetensorsFile& f : files_) f.advise_sequential();
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (auto& [name, t] : index_) out.push_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace ds::model
