// Checkpoint: every tensor of an HF checkpoint directory, by name, mapped from its safetensors
// files. Opening reads only the headers, so it is fast even for a 690 GB checkpoint.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/safetensors.h"

namespace ds::model {

class Checkpoint {
 public:
  // DIR holds model.safetensors.index.json (sharded), else model.safetensors, else any
  // *.safetensors files. Throws ds::Error on a missing shard, a tensor listed in the index but
  // absent from its shard, or a tensor present in two files.
  static Checkpoint open(const std::string& dir);

  const TensorInfo* find(const std::string& name) const;
  const TensorInfo& get(const std::string& name) const;  // throws if absent
  std::vector<std::string> names() const;                 // sorted
  uint64_t total_bytes() const { return total_bytes_; }   // sum of tensor sizes
  size_t num_files() const { return files_.size(); }
  size_t num_tensors() const { return index_.size(); }
  const std::string& dir() const { return dir_; }
  // See SafetensorsFile::advise_sequential: for loaders that copy every tensor once.
  void advise_sequential() const;

 private:
  void add_file(SafetensorsFile f);

  std::string dir_;
  std::vector<SafetensorsFile> files_;  // the mappings every TensorInfo points into
  std::unordered_map<std::string, const TensorInfo*> index_;
  uint64_t total_bytes_ = 0;
};

}  // namespace ds::model
