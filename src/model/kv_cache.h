// Paged KV pools of one model replica: per layer, the MLA latent cache (kv_lora_rank + rope dims per
// token: the normalised latent c and the rotated shared rope key) and the indexer key cache
// (index_head_dim per token). Row r of a pool is page r / page_size, offset r % page_size.
#pragma once
#include <vector>

#include "backend/backend.h"
#include "model/config.h"

namespace ds::model {

struct KVCache {
  int32_t page_size = 1;
  int32_t num_pages = 0;
  std::vector<Tensor> latent;   // [num_layers] each [num_pages * page_size, kv_lora_rank + qk_rope_head_dim]
  std::vector<Tensor> index_k;  // [num_layers] each [num_pages * page_size, index_head_dim] (v32 only)

  // Layers 0..num_hidden_layers-1, then the MTP layers when with_mtp. The latent pools hold
  // `latent_dtype` (the backend must support it: Backend::supports_kv_dtype), the indexer keys the
  // backend's activation dtype.
  static KVCache create(backend::Backend& be, const ModelConfig& c, int32_t num_pages, int32_t page_size,
                        bool with_mtp, DType latent_dtype);
  // Bytes one token occupies over all layers (for sizing pools from a memory budget).
  static int64_t bytes_per_token(const ModelConfig& c, DType latent_dtype, DType index_dtype, bool with_mtp);
};

}  // namespace ds::model
