#include "backend/kv_fp8_checks.h"

#include "util/error.h"

namespace ds::backend {

void check_fp8_pool(const Tensor& pool, const KvFp8Layout& L, const char* op) {
  DS_CHECK(pool.dtype() == DType::U8 && pool.ndim() == 2 && pool.dim(1) == L.bytes(),
           "{}: pool {} is not a packed FP8 pool of {} bytes per row", op, pool.describe(), L.bytes());
}

void check_fp8_write(const Tensor& pool, const KvFp8Layout& L, const Tensor& quant, const Tensor* rest,
                     const std::vector<int32_t>& slots) {
  check_fp8_pool(pool, L, "cache_write_fp8");
  const int64_t T = int64_t(slots.size());
  DS_CHECK(quant.dtype() == DType::F32 && quant.dim(0) == T && quant.row_size() == L.quant_dim,
           "cache_write_fp8: {} rows of {} for {} slots", quant.describe(), L.quant_dim, T);
  DS_CHECK(L.bf16_dim == 0 || (rest && rest->dtype() == DType::F32 && rest->dim(0) == T && rest->row_size() == L.bf16_dim),
           "cache_write_fp8: the bf16 part must be [{}, {}]", T, L.bf16_dim);
  for (int32_t s : slots) DS_CHECK(s >= -1 && s < pool.dim(0), "cache slot {} outside the pool of {}", s, pool.dim(0));
}

void check_fp8_gather(const Tensor& pool, const KvFp8Layout& L, const std::vector<int32_t>& slots) {
  check_fp8_pool(pool, L, "cache_gather_fp8");
  for (int32_t s : slots) DS_CHECK(s >= 0 && s < pool.dim(0), "cache slot {} outside the pool of {}", s, pool.dim(0));
}

}  // namespace ds::backend
