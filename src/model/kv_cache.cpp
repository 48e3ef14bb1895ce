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
  int64_t layers = c.num_hidden_layers + (with_mtp ? c.num_nextn_predict_layers : 0);
  int64_t rows = int64_t(num_pages) * page_size;
  for (int64_t l = 0; l < layers; ++l) {
    kv.latent.push_back(be.alloc({rows, c.kv_lora_rank + c.qk_rope_head_dim}, latent_dtype));
    if (c.has_indexer()) kv.index_k.push_back(be.alloc({rows, c.index_head_dim}, be.act_dtype()));
  }
  return kv;
}

int64_t KVCache::bytes_per_token(const ModelConfig& c, DType latent_dtype, DType index_dtype, bool with_mtp) {
  int64_t layers = c.num_hidden_layers + (with_mtp ? c.num_nextn_predict_layers : 0);
  int64_t per_layer = (c.kv_lora_rank + c.qk_rope_head_dim) * int64_t(dtype_size(latent_dtype)) +
                      (c.has_indexer() ? c.index_head_dim * int64_t(dtype_size(index_dtype)) : 0);
  return layers * per_layer;
}

}  // namespace ds::model
