#include "model/kv_cache.h"

#include "util/error.h"

namespace ds::model {

KVCache KVCache::create(backend::Backend& be, const ModelConfig& c, int32_t num_pages, int32_t page_size,
                        bool with_mtp, DType latent_dtype) {
  DS_CHECK(num_pages > 0 && page_size > 0, "KV cache needs pages > 0 and page size > 0 (got {}, {})", num_pages,
           page_size);
  DS_CHECK(be.supports_kv_dtype(latent_dtype), "the {} backend has no {} KV cache", be.name(),
           dtype_name(latent_dtype));
  KVCache kv;
  kv.page_size = page_size;
  kv.num_pages = num_pages;
  kv.latent_dtype = latent_dtype;
  kv.latent_layout = backend::KvFp8Layout::latent(c.kv_lora_rank, c.qk_rope_head_dim);
  kv.index_layout = backend::KvFp8Layout::indexer(c.index_head_dim);
  int64_t layers = c.num_hidden_layers + (with_mtp ? c.num_nextn_predict_layers : 0);
  int64_t rows = int64_t(num_pages) * page_size;
  for (int64_t l = 0; l < layers; ++l) {
    if (kv.fp8()) {
      kv.latent.push_back(be.alloc({rows, kv.latent_layout.bytes()}, DType::U8));
      if (c.has_indexer()) kv.index_k.push_back(be.alloc({rows, kv.index_layout.bytes()}, DType::U8));
      continue;
    }
    kv.latent.push_back(be.alloc({rows, c.kv_lora_rank + c.qk_rope_head_dim}, latent_dtype));
    if (c.has_indexer()) kv.index_k.push_back(be.alloc({rows, c.index_head_dim}, be.act_dtype()));
  }
  return kv;
}

int64_t KVCache::bytes_per_token(const ModelConfig& c, DType latent_dtype, DType index_dtype, bool with_mtp) {
  int64_t layers = c.num_hidden_layers + (with_mtp ? c.num_nextn_predict_layers : 0);
  if (latent_dtype == DType::F8_E4M3)
    return layers * (backend::KvFp8Layout::latent(c.kv_lora_rank, c.qk_rope_head_dim).bytes() +
                     (c.has_indexer() ? backend::KvFp8Layout::indexer(c.index_head_dim).bytes() : 0));
  int64_t per_layer = (c.kv_lora_rank + c.qk_rope_head_dim) * int64_t(dtype_size(latent_dtype)) +
                      (c.has_indexer() ? c.index_head_dim * int64_t(dtype_size(index_dtype)) : 0);
  return layers * per_layer;
}

void KVCache::write_latent(backend::Backend& be, int64_t layer, const Tensor& kv, const Tensor& kv_norm, float eps,
                           const std::vector<int32_t>& pos, const backend::RopeTable& rope,
                           const std::vector<int32_t>& slots) {
  be.mla_kv_write(kv, kv_norm.numel(), kv_norm, eps, pos, rope, latent[size_t(layer)], fp8() ? &latent_layout : nullptr,
                  slots);
}

void KVCache::write_index_key(backend::Backend& be, int64_t layer, const Tensor& k, const Tensor& ln_w,
                              const Tensor& ln_b, float eps, int64_t rot_dim, const std::vector<int32_t>& pos,
                              const backend::RopeTable& rope, bool hadamard_fp8, const std::vector<int32_t>& slots) {
  be.indexer_key_write(k, ln_w, ln_b, eps, rot_dim, pos, rope, hadamard_fp8, index_k[size_t(layer)],
                       fp8() ? &index_layout : nullptr, slots);
}

Tensor KVCache::gather_latent(backend::Backend& be, int64_t layer, const std::vector<int32_t>& slots) const {
  const Tensor& pool = latent[size_t(layer)];
  return fp8() ? be.cache_gather_fp8(pool, latent_layout, slots) : be.cache_gather(pool, slots);
}

}  // namespace ds::model
