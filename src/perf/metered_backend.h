// A Backend that forwards every op to another backend and meters a forward step: the host time spent
// in each op, and what each op must at least read and compute (weights, KV latent rows, indexer keys;
// FLOPs), so that `bench model` can put a step's time next to its HBM and tensor-core floors.
#pragma once
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include "backend/backend.h"

namespace ds::perf {

class MeteredBackend final : public backend::Backend {
 public:
  using Clock = std::chrono::steady_clock;
  explicit MeteredBackend(std::unique_ptr<backend::Backend> inner);

  // Since the last reset(). Bytes are the least each op must read once; activations are not counted.
  struct Totals {
    double weight_bytes = 0;     // every linear's weight (+ scales); MoE: only the routed experts (count_experts)
    double kv_bytes = 0;         // latent rows gathered by MLA attention (per query)
    double index_key_bytes = 0;  // indexer keys scored (once per sequence)
    double flops = 0;            // 2 x multiply-adds of GEMMs, MLA absorption, attention, indexer scores
    int64_t ops = 0;             // backend calls
    int64_t moe_layers = 0, experts_touched = 0;  // with count_experts
  };
  struct OpTime {
    int64_t calls = 0;
    double host_s = 0;    // inside the op on the host (launching, or waiting where the op syncs)
    double synced_s = 0;  // with sync_each_op: entry to the device being idle again
  };

  void reset();
  const Totals& totals() const { return totals_; }
  const std::map<std::string, OpTime>& op_times() const { return ops_; }
  // Reads each MoE layer's routing back to count the distinct experts it reads (a host sync per layer).
  void set_count_experts(bool on) { count_experts_ = on; }
  // Profiling: waits for the device after every op, so each op's time is its own.
  void set_sync_each_op(bool on) { sync_each_op_ = on; }
  // Waits until the device has finished everything queued (a 4-byte readback).
  void synchronize();
  // When the last to_host_f32 or sample began: a step's logits or ids readback, by which time the host has
  // queued it all.
  Clock::time_point last_readback() const { return last_readback_; }
  // Device bytes of every weight loaded through this backend.
  double loaded_weight_bytes() const { return loaded_bytes_; }

  std::string name() const override { return in_->name(); }
  Device device() const override { return in_->device(); }
  DType act_dtype() const override { return in_->act_dtype(); }
  int64_t free_device_memory() const override { return in_->free_device_memory(); }
  int device_index() const override { return in_->device_index(); }
  void make_current() override { in_->make_current(); }
  bool supports_kv_dtype(DType t) const override { return in_->supports_kv_dtype(t); }

  backend::LinearWeight load_linear(const backend::HostTensor& w, const backend::HostTensor* scale_inv) override;
  Tensor load_tensor_f32(const backend::HostTensor& t) override;

  Tensor alloc(std::vector<int64_t> shape, DType dtype) override;
  Tensor to_host_f32(const Tensor& t) override;
  Tensor from_host(const Tensor& t) override;
  HostBytes alloc_host_bytes(size_t bytes) override { return in_->alloc_host_bytes(bytes); }
  void gather_rows_to_host(void* dst, const Tensor& pool, const std::vector<int32_t>& rows) override {
    in_->gather_rows_to_host(dst, pool, rows);
  }
  void scatter_rows_from_host(Tensor& pool, const std::vector<int32_t>& rows, const void* src) override {
    in_->scatter_rows_from_host(pool, rows, src);
  }

  Tensor embedding(const Tensor& table, const std::vector<int32_t>& ids) override;
  Tensor embedding_part(const Tensor& table, const std::vector<int32_t>& ids, int64_t first) override;
  Tensor embedding_ids(const Tensor& table, const Tensor& ids, int64_t first) override;
  void argmax_rows(const Tensor& logits, Tensor& ids) override;
  void rescore_topk(Tensor& logits, const Tensor& x, const backend::LinearWeight& w, int k) override;
  Tensor linear(const Tensor& x, const backend::LinearWeight& w) override;
  std::vector<Tensor> linear_group(const Tensor& x, const std::vector<const backend::LinearWeight*>& ws) override;
  Tensor rmsnorm(const Tensor& x, const Tensor& w, float eps) override;
  Tensor add_rmsnorm(const Tensor& x, Tensor& residual, const Tensor& w, float eps) override;
  Tensor layernorm(const Tensor& x, const Tensor& w, const Tensor& b, float eps) override;
  void add_inplace(Tensor& y, const Tensor& x) override;
  void scale_inplace(Tensor& y, float s) override;
  void rope(Tensor& x, int64_t col0, int64_t head_stride, int64_t nheads, int64_t rot_dim,
            const std::vector<int32_t>& pos, const backend::RopeTable& table, backend::RopeLayout layout) override;
  Tensor silu_mul(const Tensor& gate, const Tensor& up) override;
  void copy_cols(Tensor& dst, int64_t dst_col0, const Tensor& src, int64_t src_col0, int64_t ncols) override;

  void cache_write(Tensor& pool, int64_t col0, const Tensor& rows, const std::vector<int32_t>& slots) override;
  Tensor cache_gather(const Tensor& pool, const std::vector<int32_t>& slots) override;
  void cache_write_fp8(Tensor& pool, const backend::KvFp8Layout& layout, const Tensor& quant, const Tensor* rest,
                       const std::vector<int32_t>& slots) override;
  Tensor cache_gather_fp8(const Tensor& pool, const backend::KvFp8Layout& layout,
                          const std::vector<int32_t>& slots) override;

  Tensor mla_absorb_q(const Tensor& q, const backend::LinearWeight& kv_b, int64_t heads, int64_t nope_dim,
                      int64_t v_dim) override;
  Tensor mla_absorb_out(const Tensor& o_lat, const backend::LinearWeight& kv_b, int64_t heads, int64_t nope_dim,
                        int64_t v_dim) override;
  Tensor mla_attention_absorbed(const Tensor& q_abs, const Tensor& kv_pool, const Tensor& index,
                                const backend::AttnBatch& batch, int64_t latent_dim, float scale) override;
  Tensor attention_expanded(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& index,
                            const backend::AttnBatch& batch, const std::vector<int32_t>& key_row0,
                            float scale) override;
  Tensor attention_mha_causal(const Tensor& q, const Tensor& kvb, const Tensor& rope, int64_t rope_col0, int64_t v_dim,
                              const backend::AttnBatch& batch, const std::vector<int32_t>& key_row0,
                              float scale) override;

  Tensor indexer_topk(const Tensor& q, const Tensor& w, const Tensor& k_pool, const backend::AttnBatch& batch,
                      int64_t heads, int64_t head_dim, int64_t topk, bool fp8_values = false) override;
  Tensor causal_index(const backend::AttnBatch& batch) override;
  void hadamard_fp8_round(Tensor& x, int64_t row_len) override;

  void mla_kv_write(const Tensor& kv, int64_t latent_dim, const Tensor& norm_w, float eps,
                    const std::vector<int32_t>& pos, const backend::RopeTable& rope, Tensor& pool,
                    const backend::KvFp8Layout* fp8, const std::vector<int32_t>& slots) override;
  void indexer_key_write(const Tensor& k, const Tensor& ln_w, const Tensor& ln_b, float eps, int64_t rot_dim,
                         const std::vector<int32_t>& pos, const backend::RopeTable& rope, bool hadamard_fp8,
                         Tensor& pool, const backend::KvFp8Layout* fp8, const std::vector<int32_t>& slots) override;
  Tensor mla_absorb_q_rope(const Tensor& q, const backend::LinearWeight& kv_b, int64_t heads, int64_t nope_dim,
                           int64_t v_dim, const std::vector<int32_t>& pos, const backend::RopeTable& rope) override;

  void moe_route(const Tensor& router_logits, const Tensor& bias, const backend::MoeRouting& cfg, Tensor* ids,
                 Tensor* weights) override;
  std::shared_ptr<const backend::ExpertSet> prepare_experts(std::vector<backend::ExpertWeights> experts) override {
    return in_->prepare_experts(std::move(experts));  // the wrapped backend's own form
  }
  Tensor moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights,
                     const backend::ExpertSet& experts) override;
  // One op "moe_experts" with the shared expert inside (the wrapped backend may fuse the two).
  Tensor moe_ffn(const Tensor& x, const Tensor& ids, const Tensor& weights, const backend::ExpertSet& experts,
                 const backend::ExpertWeights* shared) override;
  void moe_local_ids(Tensor& ids, int32_t first, int32_t count) override;

  // Every optional op is forwarded too: one left at the base class's default would silently bypass
  // the wrapped backend.
  bool can_sample() const override { return in_->can_sample(); }
  int32_t max_sample_top_logprobs() const override { return in_->max_sample_top_logprobs(); }
  std::vector<backend::SampledRow> sample(Tensor& logits, const backend::SamplingBatch& batch) override;
  void bind_step(const backend::StepIndex* s) override { in_->bind_step(s); }
  // With a sync after every op, a branch runs in order (its ops' times are their own).
  void branch(const std::function<void()>& ops, int64_t tokens) override {
    sync_each_op_ ? ops() : in_->branch(ops, tokens);
  }
  void join_branch() override { in_->join_branch(); }
  // Counting experts and per-op syncs need the ops to run one by one: no recorded steps then.
  bool can_capture() const override { return in_->can_capture() && !count_experts_ && !sync_each_op_; }
  std::unique_ptr<backend::CapturedStep> capture(const backend::StepIndex& example, int32_t pages_per_seq,
                                                 const std::function<Tensor()>& body) override;
  Tensor replay(backend::CapturedStep& step, const backend::StepIndex& idx) override;

 private:
  class Scope;  // times one op
  std::string linear_name(const backend::LinearWeight& w) const;
  void count_experts(const Tensor& ids, const backend::ExpertSet& experts);

  std::unique_ptr<backend::Backend> in_;
  Totals totals_;
  std::map<std::string, OpTime> ops_;
  std::unordered_map<const void*, std::string> weight_names_;  // device pointer -> checkpoint name (short)
  bool count_experts_ = false, sync_each_op_ = false;
  Clock::time_point last_readback_{};
  double loaded_bytes_ = 0;
  Tensor probe_;  // 1 float, read back by synchronize()
};

}  // namespace ds::perf
