// The rows of a KV pool as fp32, for the CPU attention and indexer ops: an fp32 pool is read in place; a
// packed FP8 pool (backend/kv_fp8.h) has the rows a step touches dequantised once, inside the op.
#pragma once
#include <unordered_map>
#include <vector>

#include "backend/kv_fp8.h"
#include "tensor/tensor.h"

namespace ds::backend::cpu {

class KvRows {
 public:
  // layout null: pool is F32. Otherwise pool is packed and `slots` lists the rows that will be read.
  KvRows(const Tensor& pool, const KvFp8Layout* layout, const std::vector<int32_t>& slots);
  const float* row(int32_t slot) const;  // width() floats
  int64_t width() const { return width_; }

 private:
  const float* base_ = nullptr;
  int64_t width_ = 0;
  std::vector<float> rows_;
  std::unordered_map<int32_t, const float*> where_;
};

}  // namespace ds::backend::cpu
