// Packed FP8 KV pools on the CPU (backend/kv_fp8.h): the quantising cache write, the dequantising
// gather, and the row cache the attention and indexer ops read such pools through.
#include "backend/cpu/kv_fp8_rows.h"

#include <omp.h>

#include <algorithm>

#include "backend/cpu/cpu_backend.h"
#include "util/error.h"

namespace ds::backend::cpu {

namespace {
void check_pool(const Tensor& pool, const KvFp8Layout& L, const char* op) {
  DS_CHECK(pool.dtype() == DType::U8 && pool.ndim() == 2 && pool.dim(1) == L.bytes(),
           "{}: pool {} is not a packed FP8 pool of {} bytes per row", op, pool.describe(), L.bytes());
}
}  // namespace

void CpuBackend::cache_write_fp8(Tensor& pool, const KvFp8Layout& L, const Tensor& quant, const Tensor* rest,
                                 const std::vector<int32_t>& slots) {
  check_pool(pool, L, "cache_write_fp8");
  const int64_t T = int64_t(slots.size());
  DS_CHECK(quant.dtype() == DType::F32 && quant.dim(0) == T && quant.row_size() == L.quant_dim,
           "cache_write_fp8: {} rows of {} for {} slots", quant.describe(), L.quant_dim, T);
  DS_CHECK(L.bf16_dim == 0 || (rest && rest->dtype() == DType::F32 && rest->dim(0) == T && rest->row_size() == L.bf16_dim),
           "cache_write_fp8: the bf16 part must be [{}, {}]", T, L.bf16_dim);
  for (int32_t s : slots) DS_CHECK(s >= -1 && s < pool.dim(0), "cache slot {} outside the pool of {}", s, pool.dim(0));
  uint8_t* base = pool.data<uint8_t>();
#pragma omp parallel for if (T > 256)
  for (int64_t t = 0; t < T; ++t) {
    if (slots[t] < 0) continue;  // a padding row: nothing to keep
    kv_fp8_pack_row(L, quant.f32() + t * L.quant_dim, L.bf16_dim ? rest->f32() + t * L.bf16_dim : nullptr,
                    base + int64_t(slots[t]) * L.bytes());
  }
}

Tensor CpuBackend::cache_gather_fp8(const Tensor& pool, const KvFp8Layout& L, const std::vector<int32_t>& slots) {
  check_pool(pool, L, "cache_gather_fp8");
  const int64_t n = int64_t(slots.size());
  for (int32_t s : slots) DS_CHECK(s >= 0 && s < pool.dim(0), "cache slot {} outside the pool of {}", s, pool.dim(0));
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
  check_pool(pool, *layout, "attention");
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
