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
  // F8_E4M3: both kinds of pools are packed FP8 rows (U8 [rows, layout bytes], backend/kv_fp8.h).
  DType latent_dtype = DType::F32;
  backend::KvFp8Layout latent_layout, index_layout;  // used when fp8()
  bool fp8() const { return latent_dtype == DType::F8_E4M3; }

  // A layer's new entries, made and written in the pools' format by one fused backend op each
  // (Backend::mla_kv_write, Backend::indexer_key_write): the latents c (kv_a's output [T, kv_lora_rank +
  // qk_rope_head_dim] -> RMSNorm of the latent part, rope key rotated) and the indexer keys (idx_wk's output
  // -> LayerNorm, half-split rope, optionally Hadamard + FP8 rounding).
  void write_latent(backend::Backend& be, int64_t layer, const Tensor& kv, const Tensor& kv_norm, float eps,
                    const std::vector<int32_t>& pos, const backend::RopeTable& rope, const std::vector<int32_t>& slots);
  void write_index_key(backend::Backend& be, int64_t layer, const Tensor& k, const Tensor& ln_w, const Tensor& ln_b,
                       float eps, int64_t rot_dim, const std::vector<int32_t>& pos, const backend::RopeTable& rope,
                       bool hadamard_fp8, const std::vector<int32_t>& slots);
  // Rows [n, kv_lora_rank + qk_rope_head_dim] of a layer's latent pool, dequantised when fp8().
  Tensor gather_latent(backend::Backend& be, int64_t layer, const std::vector<int32_t>& slots) const;

  // Layers 0..num_hidden_layers-1, then the MTP layers when with_mtp. The latent pools hold
  // `latent_dtype` (the backend must support it: Backend::supports_kv_dtype), the indexer keys the
  // backend's activation dtype; with F8_E4M3 both are packed FP8 (656 + 132 bytes per token and layer
  // at DeepSeek-V3.2's widths).
  static KVCache create(backend::Backend& be, const ModelConfig& c, int32_t num_pages, int32_t page_size,
                        bool with_mtp, DType latent_dtype);
  // Bytes one token occupies over all layers (for sizing pools from a memory budget). index_dtype is
  // ignored when latent_dtype is F8_E4M3 (the indexer keys are packed FP8 too).
  static int64_t bytes_per_token(const ModelConfig& c, DType latent_dtype, DType index_dtype, bool with_mtp);
};

}  // namespace ds::model
