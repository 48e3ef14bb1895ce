// Packed FP8 KV pools on the CPU (backend/kv_fp8.h): the quantising cache write, the dequantising
// gather, and the row cache the attention and indexer ops read such pools through.
#include "backend/cpu/kv_fp8_rows.h"

#include <omp.h>

#include <algorithm>

#include "backend/cpu/cpu_backend.h"
#include "backend/kv_fp8_checks.h"
#include "util/error.h"

namespace ds::backend::cpu {

void CpuBackend::cache_write_fp8(Tensor& pool, const KvFp8Layout& L, const Tensor& quant, const Tensor* rest,
                                 const std::vector<int32_t>& slots) {
  check_fp8_write(pool, L, quant, rest, slots);
  const int64_t T = int64_t(slots.size());
  uint8_t* base = pool.data<uint8_t>();
#pragma omp parallel for if (T > 256)
  for (int64_t t = 0; t < T; ++t) {
    if (slots[t] < 0) continue;  // a padding row: nothing to keep
    kv_fp8_pack_row(L, quant.f32() + t * L.quant_dim, L.bf16_dim ? rest->f32() + t * L.bf16_dim : nullptr,
                    base + int64_t(slots[t]) * L.bytes());
  }
}

Tensor CpuBackend::cache_gather_fp8(const Tensor& pool, const KvFp8Layout& L, const std::vector<int32_t>& slots) {
  check_fp8_gather(pool, L, slots);
  const int64_t n = int64_t(slots.size());
  Tensor out = Tensor::empty({n, L.width()}, DType::F32);
  for (int64_t i = 0; i < n; ++i)
    kv_fp8_unpack_row(L, pool.data<uint8_t>() + int64_t(slots[i]) * L.bytes(), out.f32() + i * L.width());
  return out;
}

KvRows::KvRows(const Tensor& pool, const KvFp8Layout* layout, const std::vector<int32_t>& slots) {
  if (!layout) {  // an fp32 pool: its rows as they are
    DS_CHECK(pool.dtype() == DType::F32, "KV pool {}: the CPU backend reads F32 or packed FP8 pools",
             pool.describe());
    base_ = pool.f32();
    width_ = pool.row_size();
    return;
  }
  check_fp8_pool(pool, *layout, "attention");
  width_ = layout->width();
  // Each distinct row once, in parallel; the ops then read fp32 rows as from an fp32 pool.
  std::vector<int32_t> distinct = slots;
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  rows_.resize(distinct.size() * size_t(width_));
  const uint8_t* p = pool.data<uint8_t>();
#pragma omp parallel for if (distinct.size() > 256)
  for (size_t i = 0; i < distinct.size(); ++i)
    kv_fp8_unpack_row(*layout, p + int64_t(distinct[i]) * layout->bytes(), rows_.data() + i * width_);
  where_.reserve(distinct.size());
  for (size_t i = 0; i < distinct.size(); ++i) where_.emplace(distinct[i], rows_.data() + i * width_);
}

const float* KvRows::row(int32_t slot) const {
  if (base_) return base_ + int64_t(slot) * width_;
  return where_.at(slot);
}

}  // namespace ds::backend::cpu
