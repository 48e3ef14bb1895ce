// Backend's fused per-token steps of the attention block and the MoE layer's experts + shared expert, by
// default: the composition of the separate ops exactly as model/layer.cpp called them before these ops
// existed (the CPU backend's results stay bit for bit those of the separate ops; the CUDA backend
// overrides each with fewer kernels).
#include "backend/backend.h"

namespace ds::backend {

void Backend::mla_kv_write(const Tensor& kv, int64_t latent_dim, const Tensor& norm_w, float eps,
                           const std::vector<int32_t>& pos, const RopeTable& rope, Tensor& pool,
                           const KvFp8Layout* fp8, const std::vector<int32_t>& slots) {
  const int64_t T = kv.dim(0), Dl = latent_dim, Dr = kv.row_size() - latent_dim;
  DS_CHECK(Dl > 0 && Dr >= 0, "mla_kv_write: latent width {} of rows of {}", Dl, kv.row_size());
  Tensor c = alloc({T, Dl}, act_dtype());
  copy_cols(c, 0, kv, 0, Dl);
  c = rmsnorm(c, norm_w, eps);
  Tensor k_rope = alloc({T, Dr}, act_dtype());
  copy_cols(k_rope, 0, kv, Dl, Dr);
  this->rope(k_rope, 0, Dr, 1, Dr, pos, rope, RopeLayout::Interleaved);
  if (fp8) return cache_write_fp8(pool, *fp8, c, &k_rope, slots);
  cache_write(pool, 0, c, slots);
  cache_write(pool, Dl, k_rope, slots);
}

void Backend::indexer_key_write(const Tensor& k, const Tensor& ln_w, const Tensor& ln_b, float eps, int64_t rot_dim,
                                const std::vector<int32_t>& pos, const RopeTable& rope, bool hadamard_fp8,
                                Tensor& pool, const KvFp8Layout* fp8, const std::vector<int32_t>& slots) {
  const int64_t Di = k.row_size();
  Tensor ki = layernorm(k, ln_w, ln_b, eps);
  this->rope(ki, 0, Di, 1, rot_dim, pos, rope, RopeLayout::HalfSplit);
  if (hadamard_fp8) hadamard_fp8_round(ki, Di);
  if (fp8) return cache_write_fp8(pool, *fp8, ki, nullptr, slots);
  cache_write(pool, 0, ki, slots);
}

Tensor Backend::mla_absorb_q_rope(const Tensor& q, const LinearWeight& kv_b, int64_t heads, int64_t nope_dim,
                                  int64_t v_dim, const std::vector<int32_t>& pos, const RopeTable& rope) {
  DS_CHECK(heads > 0 && q.row_size() % heads == 0, "mla_absorb_q_rope: {} for {} heads", q.describe(), heads);
  const int64_t qd = q.row_size() / heads, Dr = qd - nope_dim;
  Tensor qr = q;  // the same storage: rotated in place, as the model did before this op
  this->rope(qr, nope_dim, qd, heads, Dr, pos, rope, RopeLayout::Interleaved);
  return mla_absorb_q(qr, kv_b, heads, nope_dim, v_dim);
}

Tensor Backend::moe_ffn(const Tensor& x, const Tensor& ids, const Tensor& weights, const ExpertSet& experts,
                        const ExpertWeights* shared) {
  Tensor y = moe_experts(x, ids, weights, experts);
  if (!shared) return y;
  std::vector<Tensor> gate_up = linear_group(x, {&shared->gate, &shared->up});
  add_inplace(y, linear(silu_mul(gate_up[0], gate_up[1]), shared->down));
  return y;
}

}  // namespace ds::backend
