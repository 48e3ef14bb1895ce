// Streaming safetensors writer: tensors are produced one at a time by a callback and written
// straight out, so a checkpoint of tens of GB needs only one tensor's worth of memory.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tensor/dtype.h"

namespace ds::model {

struct TensorSpec {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;

  uint64_t nbytes() const;  // throws on negative dims or overflow
};

// fill(spec, out, nbytes) must write all nbytes of the tensor's data at out.
using TensorFill = std::function<void(const TensorSpec&, uint8_t* out, uint64_t nbytes)>;

// One safetensors file at `path` (written as path + ".tmp", then renamed), tensors in plan
// order, header padded with spaces to 8 bytes, __metadata__ {"format": "pt"}.
void write_safetensors(const std::string& path, const std::vector<TensorSpec>& plan, const TensorFill& fill);

// An HF sharded checkpoint in `dir` (created if needed): model-0000i-of-0000N.safetensors,
// each holding consecutive plan tensors up to max_shard_bytes (a larger tensor gets a shard
// of its own), plus model.safetensors.index.json, written last.
void write_sharded_checkpoint(const std::string& dir, const std::vector<TensorSpec>& plan, const TensorFill& fill,
                              uint64_t max_shard_bytes, bool show_progress);

}  // namespace ds::model
