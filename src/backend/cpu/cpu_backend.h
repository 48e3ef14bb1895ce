// The CPU backend: fp32 activations, weights dequantised to fp32 at load, OpenMP threads, SIMD GEMM.
// It is the numerical reference for the other backends (everything accumulates in fp32).
#pragma once
#include "backend/backend.h"

namespace ds::backend::cpu {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int num_threads);
  void make_current() override;
  std::string name() const override { return "cpu"; }
  Device device() const override { return Device::CPU; }
  DType act_dtype() const override { return DType::F32; }
  bool supports_kv_dtype(DType t) const override { return t == DType::F32 || t == DType::F8_E4M3; }

  LinearWeight load_linear(const HostTensor& w, const HostTensor* scale_inv) override;
  Tensor load_tensor_f32(const HostTensor& t) override;

  Tensor alloc(std::vector<int64_t> shape, DType dtype) override;
  Tensor to_host_f32(const Tensor& t) override;
  Tensor from_host(const Tensor& t) override { return t; }

  Tensor embedding(const Tensor& table, const std::vector<int32_t>& ids) override;
  Tensor embedding_part(const Tensor& table, const std::vector<int32_t>& ids, int64_t first) override;
  Tensor embedding_ids(const Tensor& table, const Tensor& ids, int64_t first) override;
  void argmax_rows(const Tensor& logits, Tensor& ids) override;
  Tensor linear(const Tensor& x, const LinearWeight& w) override;
  Tensor rmsnorm(const Tensor& x, const Tensor& w, float eps) override;
  Tensor add_rmsnorm(const Tensor& x, Tensor& residual, const Tensor& w, float eps) override;
  Tensor layernorm(const Tensor& x, const Tensor& w, const Tensor& b, float eps) override;
  void add_inplace(Tensor& y, const Tensor& x) override;
  void scale_inplace(Tensor& y, float s) override;
  void rope(Tensor& x, int64_t col0, int64_t head_stride, int64_t nheads, int64_t rot_dim,
            const std::vector<int32_t>& pos, const RopeTable& table, RopeLayout layout) override;
  Tensor silu_mul(const Tensor& gate, const Tensor& up) override;
  void copy_cols(Tensor& dst, int64_t dst_col0, const Tensor& src, int64_t src_col0, int64_t ncols) override;

  void cache_write(Tensor& pool, int64_t col0, const Tensor& rows, const std::vector<int32_t>& slots) override;
  Tensor cache_gather(const Tensor& pool, const std::vector<int32_t>& slots) override;
  void cache_write_fp8(Tensor& pool, const KvFp8Layout& layout, const Tensor& quant, const Tensor* rest,
                       const std::vector<int32_t>& slots) override;
  Tensor cache_gather_fp8(const Tensor& pool, const KvFp8Layout& layout, const std::vector<int32_t>& slots) override;

  Tensor mla_absorb_q(const Tensor& q, const LinearWeight& kv_b, int64_t heads, int64_t nope_dim,
                      int64_t v_dim) override;
  Tensor mla_absorb_out(const Tensor& o_lat, const LinearWeight& kv_b, int64_t heads, int64_t nope_dim,
                        int64_t v_dim) override;
  Tensor mla_attention_absorbed(const Tensor& q_abs, const Tensor& kv_pool, const Tensor& index,
                                const AttnBatch& batch, int64_t latent_dim, float scale) override;
  Tensor attention_expanded(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& index,
                            const AttnBatch& batch, const std::vector<int32_t>& key_row0, float scale) override;
  Tensor attention_mha_causal(const Tensor& q, const Tensor& kvb, const Tensor& rope, int64_t rope_col0, int64_t v_dim,
                              const AttnBatch& batch, const std::vector<int32_t>& key_row0, float scale) override;

  Tensor indexer_topk(const Tensor& q, const Tensor& w, const Tensor& k_pool, const AttnBatch& batch,
                      int64_t heads, int64_t head_dim, int64_t topk, bool fp8_values = false) override;
  Tensor causal_index(const AttnBatch& batch) override;
  void hadamard_fp8_round(Tensor& x, int64_t row_len) override;

  void moe_route(const Tensor& router_logits, const Tensor& bias, const MoeRouting& cfg, Tensor* ids,
                 Tensor* weights) override;
  Tensor moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights, const ExpertSet& set) override;
  void moe_local_ids(Tensor& ids, int32_t first, int32_t count) override;

 private:
  int num_threads_ = 0;
};

// Converts any checkpoint dtype to fp32 (FP8 with its 128x128 block scales when given).
void host_to_f32(const HostTensor& t, const HostTensor* scale_inv, float* out);

}  // namespace ds::backend::cpu
