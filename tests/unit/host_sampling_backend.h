// A backend that "samples on its device" on the host: the CPU backend for every op, plus
// Backend::sample implemented with runtime::sample, so that the engine's device-sampling path (row
// building, penalty lists, seeds and positions, error rows, the host fallback) runs in CPU-only CI.
// Penalties come only from the batch's penalty lists (history is not passed), as on a real device.
#pragma once
#include <mutex>
#include <random>

#include "backend/backend.h"
#include "runtime/sampler.h"

namespace ds::fakes {

class HostSamplingBackend : public backend::Backend {
 public:
  explicit HostSamplingBackend(int32_t max_top_logprobs = 64) : cpu_(backend::make_cpu_backend(0)), max_top_(max_top_logprobs) {}

  // What sample() saw, for the tests: (seed, position) of every row, in call order.
  std::vector<std::pair<uint64_t, uint64_t>> draws() {
    std::lock_guard lk(mu_);
    return draws_;
  }
  // Rows with this seed come back failed (as rows with NaN logits do from a device).
  void fail_seed(uint64_t s) { fail_seed_ = s; }

  bool can_sample() const override { return true; }
  int32_t max_sample_top_logprobs() const override { return max_top_; }
  std::vector<backend::SampledRow> sample(Tensor& logits, const backend::SamplingBatch& b) override {
    const int64_t V = logits.dim(1);
    std::vector<backend::SampledRow> out;
    for (const auto& row : b.rows) {
      {
        std::lock_guard lk(mu_);
        draws_.emplace_back(row.seed, row.position);
      }
      float* x = logits.f32() + row.logits_row * V;
      for (int32_t e = row.penalty_begin; e < row.penalty_begin + row.penalty_count; ++e) {
        float& v = x[b.penalty_ids[size_t(e)]];
        if (row.repetition_penalty != 1.0f) v = v > 0 ? v / row.repetition_penalty : v * row.repetition_penalty;
        const int32_t n = b.penalty_output_counts[size_t(e)];
        if (n > 0) v -= static_cast<float>(n) * row.frequency_penalty + row.presence_penalty;
      }
      if (row.mask_begin >= 0) backend::apply_token_mask(x, V, b.token_masks.data() + row.mask_begin);
      runtime::SamplingParams p;
      p.temperature = row.temperature;
      p.top_k = row.top_k;
      p.top_p = row.top_p;
      p.min_p = row.min_p;
      p.logprobs = row.logprobs;
      p.top_logprobs = row.top_logprobs;
      std::mt19937_64 rng(row.seed * 0x9E3779B97F4A7C15ull + row.position);
      backend::SampledRow r;
      if (row.seed != fail_seed_) {
        auto s = runtime::sample(x, V, p, {}, 0, rng);
        r.token = s.token;
        r.logprob = s.logprob;
        r.top_logprobs = s.top_logprobs;
      }
      out.push_back(std::move(r));
    }
    return out;
  }

  std::string name() const override { return "host-sampling"; }
  Device device() const override { return cpu_->device(); }
  DType act_dtype() const override { return cpu_->act_dtype(); }
  bool supports_kv_dtype(DType t) const override { return cpu_->supports_kv_dtype(t); }
  backend::LinearWeight load_linear(const backend::HostTensor& w, const backend::HostTensor* s) override {
    return cpu_->load_linear(w, s);
  }
  Tensor load_tensor_f32(const backend::HostTensor& t) override { return cpu_->load_tensor_f32(t); }
  Tensor alloc(std::vector<int64_t> shape, DType dtype) override { return cpu_->alloc(std::move(shape), dtype); }
  Tensor to_host_f32(const Tensor& t) override { return cpu_->to_host_f32(t); }
  Tensor from_host(const Tensor& t) override { return cpu_->from_host(t); }
  Tensor embedding(const Tensor& table, const std::vector<int32_t>& ids) override { return cpu_->embedding(table, ids); }
  Tensor embedding_part(const Tensor& table, const std::vector<int32_t>& ids, int64_t first) override {
    return cpu_->embedding_part(table, ids, first);
  }
  Tensor embedding_ids(const Tensor& table, const Tensor& ids, int64_t first) override {
    return cpu_->embedding_ids(table, ids, first);
  }
  void argmax_rows(const Tensor& logits, Tensor& ids) override { cpu_->argmax_rows(logits, ids); }
  void rescore_topk(Tensor& logits, const Tensor& x, const backend::LinearWeight& w, int k) override {
    cpu_->rescore_topk(logits, x, w, k);
  }
  Tensor linear(const Tensor& x, const backend::LinearWeight& w) override { return cpu_->linear(x, w); }
  Tensor rmsnorm(const Tensor& x, const Tensor& w, float eps) override { return cpu_->rmsnorm(x, w, eps); }
  Tensor add_rmsnorm(const Tensor& x, Tensor& residual, const Tensor& w, float eps) override {
    return cpu_->add_rmsnorm(x, residual, w, eps);
  }
  Tensor layernorm(const Tensor& x, const Tensor& w, const Tensor& b, float eps) override {
    return cpu_->layernorm(x, w, b, eps);
  }
  void add_inplace(Tensor& y, const Tensor& x) override { cpu_->add_inplace(y, x); }
  void scale_inplace(Tensor& y, float s) override { cpu_->scale_inplace(y, s); }
  void rope(Tensor& x, int64_t col0, int64_t head_stride, int64_t nheads, int64_t rot_dim, const std::vector<int32_t>& pos,
            const backend::RopeTable& table, backend::RopeLayout layout) override {
    cpu_->rope(x, col0, head_stride, nheads, rot_dim, pos, table, layout);
  }
  Tensor silu_mul(const Tensor& gate, const Tensor& up) override { return cpu_->silu_mul(gate, up); }
  void copy_cols(Tensor& dst, int64_t dst_col0, const Tensor& src, int64_t src_col0, int64_t ncols) override {
    cpu_->copy_cols(dst, dst_col0, src, src_col0, ncols);
  }
  void cache_write(Tensor& pool, int64_t col0, const Tensor& rows, const std::vector<int32_t>& slots) override {
    cpu_->cache_write(pool, col0, rows, slots);
  }
  Tensor cache_gather(const Tensor& pool, const std::vector<int32_t>& slots) override {
    return cpu_->cache_gather(pool, slots);
  }
  void cache_write_fp8(Tensor& pool, const backend::KvFp8Layout& layout, const Tensor& quant, const Tensor* rest,
                       const std::vector<int32_t>& slots) override {
    cpu_->cache_write_fp8(pool, layout, quant, rest, slots);
  }
  Tensor cache_gather_fp8(const Tensor& pool, const backend::KvFp8Layout& layout,
                          const std::vector<int32_t>& slots) override {
    return cpu_->cache_gather_fp8(pool, layout, slots);
  }
  Tensor mla_absorb_q(const Tensor& q, const backend::LinearWeight& kv_b, int64_t heads, int64_t nope_dim,
                      int64_t v_dim) override {
    return cpu_->mla_absorb_q(q, kv_b, heads, nope_dim, v_dim);
  }
  Tensor mla_absorb_out(const Tensor& o_lat, const backend::LinearWeight& kv_b, int64_t heads, int64_t nope_dim,
                        int64_t v_dim) override {
    return cpu_->mla_absorb_out(o_lat, kv_b, heads, nope_dim, v_dim);
  }
  Tensor mla_attention_absorbed(const Tensor& q_abs, const Tensor& kv_pool, const Tensor& index,
                                const backend::AttnBatch& batch, int64_t latent_dim, float scale) override {
    return cpu_->mla_attention_absorbed(q_abs, kv_pool, index, batch, latent_dim, scale);
  }
  Tensor attention_expanded(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& index,
                            const backend::AttnBatch& batch, const std::vector<int32_t>& key_row0, float scale) override {
    return cpu_->attention_expanded(q, k, v, index, batch, key_row0, scale);
  }
  Tensor attention_mha_causal(const Tensor& q, const Tensor& kvb, const Tensor& rope, int64_t rope_col0, int64_t v_dim,
                              const backend::AttnBatch& batch, const std::vector<int32_t>& key_row0,
                              float scale) override {
    return cpu_->attention_mha_causal(q, kvb, rope, rope_col0, v_dim, batch, key_row0, scale);
  }
  Tensor indexer_topk(const Tensor& q, const Tensor& w, const Tensor& k_pool, const backend::AttnBatch& batch,
                      int64_t heads, int64_t head_dim, int64_t topk, bool fp8_values = false) override {
    return cpu_->indexer_topk(q, w, k_pool, batch, heads, head_dim, topk, fp8_values);
  }
  Tensor causal_index(const backend::AttnBatch& batch) override { return cpu_->causal_index(batch); }
  void hadamard_fp8_round(Tensor& x, int64_t row_len) override { cpu_->hadamard_fp8_round(x, row_len); }
  void moe_route(const Tensor& router_logits, const Tensor& bias, const backend::MoeRouting& cfg, Tensor* ids,
                 Tensor* weights) override {
    cpu_->moe_route(router_logits, bias, cfg, ids, weights);
  }
  Tensor moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights,
                     const backend::ExpertSet& experts) override {
    return cpu_->moe_experts(x, ids, weights, experts);
  }
  void moe_local_ids(Tensor& ids, int32_t first, int32_t count) override { cpu_->moe_local_ids(ids, first, count); }

 private:
  std::unique_ptr<backend::Backend> cpu_;
  int32_t max_top_;
  uint64_t fail_seed_ = ~uint64_t(0);
  std::mutex mu_;
  std::vector<std::pair<uint64_t, uint64_t>> draws_;
};

}  // namespace ds::fakes
