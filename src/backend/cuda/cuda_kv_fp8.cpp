// CudaBackend: packed FP8 KV pools (backend/kv_fp8.h): the fused quantising write and the dequantising
// gather. The attention and indexer kernels read such pools themselves (cuda_attention.cpp).
#include "backend/cuda/cuda_backend.h"
#include "backend/kv_fp8_checks.h"

namespace ds::backend::cuda {

KvFp8Dev kv_fp8_dev(const KvFp8Layout& L) {
  DS_CHECK(L.quant_dim % 4 == 0 && L.tile % 4 == 0 && L.bf16_dim % 4 == 0,
           "FP8 KV rows on the GPU need widths that are multiples of 4 (got {} / {} / {})", L.quant_dim, L.tile,
           L.bf16_dim);
  KvFp8Dev d;
  d.quant_dim = int(L.quant_dim);
  d.tile = int(L.tile);
  d.bf16_dim = int(L.bf16_dim);
  d.bytes = int(L.bytes());
  d.pow2 = L.pow2_scales;
  return d;
}

namespace {
void check_on_gpu(const Tensor& pool, const char* op) {
  DS_CHECK(pool.device() == Device::CUDA, "{}: pool {} is not on the GPU", op, pool.describe());
}
}  // namespace

void CudaBackend::cache_write_fp8(Tensor& pool, const KvFp8Layout& L, const Tensor& quant, const Tensor* rest,
                                  const std::vector<int32_t>& slots) {
  check_on_gpu(pool, "cache_write_fp8");
  check_fp8_write(pool, L, quant, rest, slots);
  const int64_t T = int64_t(slots.size());
  if (slots.empty()) return;
  launch_cache_write_fp8(pool.data<uint8_t>(), kv_fp8_dev(L), quant.data<float>(),
                         L.bf16_dim ? rest->data<float>() : nullptr, upload_i32(slots), int(T), stream_);
  check_launch("cache_write_fp8");
}

Tensor CudaBackend::cache_gather_fp8(const Tensor& pool, const KvFp8Layout& L, const std::vector<int32_t>& slots) {
  check_on_gpu(pool, "cache_gather_fp8");
  check_fp8_gather(pool, L, slots);
  Tensor out = empty({int64_t(slots.size()), L.width()}, DType::F32);
  if (slots.empty()) return out;
  launch_gather_fp8(pool.data<uint8_t>(), kv_fp8_dev(L), upload_i32(slots), int(slots.size()), out.data<float>(),
                    stream_);
  check_launch("cache_gather_fp8");
  return out;
}

}  // namespace ds::backend::cuda
