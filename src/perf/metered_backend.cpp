#include "perf/metered_backend.h"

#include <algorithm>
#include <exception>

#include "util/error.h"

namespace ds::perf {

using backend::AttnBatch;
using backend::LinearWeight;

namespace {
double seconds(MeteredBackend::Clock::duration d) { return std::chrono::duration<double>(d).count(); }

double weight_bytes(const LinearWeight& w) {
  return double(w.w.nbytes()) + (w.scale.defined() ? double(w.scale.nbytes()) : 0.0);
}

// "model.layers.7.mlp.experts.12.up_proj.weight" -> "mlp.experts.up_proj": one name per kind of weight.
std::string short_name(std::string s) {
  if (s.rfind("model.layers.", 0) == 0) s = s.substr(s.find('.', 13) + 1);
  if (auto p = s.find("mlp.experts."); p != std::string::npos) {
    auto q = s.find('.', p + 12);
    if (q != std::string::npos) s.erase(p + 12, q - (p + 12) + 1);
  }
  if (s.ends_with(".weight")) s.resize(s.size() - 7);
  return s;
}
}  // namespace

// Times one op on the host; with sync_each_op also until the device is idle again.
class MeteredBackend::Scope {
 public:
  Scope(MeteredBackend& m, std::string name) : m_(m), name_(std::move(name)), t0_(Clock::now()) {}
  ~Scope() noexcept(false) {
    OpTime& o = m_.ops_[name_];
    ++o.calls;
    ++m_.totals_.ops;
    o.host_s += seconds(Clock::now() - t0_);
    if (m_.sync_each_op_ && std::uncaught_exceptions() == 0) {
      m_.synchronize();
      o.synced_s += seconds(Clock::now() - t0_);
    }
  }

 private:
  MeteredBackend& m_;
  std::string name_;
  Clock::time_point t0_;
};

MeteredBackend::MeteredBackend(std::unique_ptr<backend::Backend> inner) : in_(std::move(inner)) {}

void MeteredBackend::reset() {
  totals_ = {};
  ops_.clear();
}

void MeteredBackend::synchronize() {
  if (!probe_.defined()) probe_ = in_->alloc({1}, DType::F32);
  in_->to_host_f32(probe_);
}

std::string MeteredBackend::linear_name(const LinearWeight& w) const {
  auto it = weight_names_.find(w.w.raw());
  return it != weight_names_.end() ? it->second : fmt::format("linear {}x{}", w.out_features, w.in_features);
}

// ---------------------------------------------------------------- weights and memory

LinearWeight MeteredBackend::load_linear(const backend::HostTensor& w, const backend::HostTensor* scale_inv) {
  LinearWeight lw = in_->load_linear(w, scale_inv);
  weight_names_[lw.w.raw()] = short_name(w.name);
  loaded_bytes_ += weight_bytes(lw);
  return lw;
}

Tensor MeteredBackend::load_tensor_f32(const backend::HostTensor& t) {
  Tensor out = in_->load_tensor_f32(t);
  loaded_bytes_ += double(out.nbytes());
  return out;
}

Tensor MeteredBackend::alloc(std::vector<int64_t> shape, DType dtype) {
  Scope s(*this, "alloc");
  return in_->alloc(std::move(shape), dtype);
}

Tensor MeteredBackend::to_host_f32(const Tensor& t) {
  last_readback_ = Clock::now();
  Scope s(*this, "to_host_f32");
  return in_->to_host_f32(t);
}

Tensor MeteredBackend::from_host(const Tensor& t) {
  Scope s(*this, "from_host");
  return in_->from_host(t);
}

// ---------------------------------------------------------------- dense ops

Tensor MeteredBackend::embedding(const Tensor& table, const std::vector<int32_t>& ids) {
  Scope s(*this, "embedding");
  totals_.weight_bytes += double(ids.size()) * double(table.row_size()) * double(dtype_size(table.dtype()));
  return in_->embedding(table, ids);
}

Tensor MeteredBackend::embedding_part(const Tensor& table, const std::vector<int32_t>& ids, int64_t first) {
  Scope s(*this, "embedding");
  totals_.weight_bytes += double(ids.size()) * double(table.row_size()) * double(dtype_size(table.dtype()));
  return in_->embedding_part(table, ids, first);
}

Tensor MeteredBackend::embedding_ids(const Tensor& table, const Tensor& ids, int64_t first) {
  Scope s(*this, "embedding");
  totals_.weight_bytes += double(ids.numel()) * double(table.row_size()) * double(dtype_size(table.dtype()));
  return in_->embedding_ids(table, ids, first);
}

void MeteredBackend::argmax_rows(const Tensor& logits, Tensor& ids) {
  Scope s(*this, "argmax");
  in_->argmax_rows(logits, ids);
}

void MeteredBackend::rescore_topk(Tensor& logits, const Tensor& x, const LinearWeight& w, int k) {
  Scope s(*this, "draft_rescore");
  in_->rescore_topk(logits, x, w, k);
}

Tensor MeteredBackend::linear(const Tensor& x, const LinearWeight& w) {
  Scope s(*this, linear_name(w));
  totals_.weight_bytes += weight_bytes(w);
  totals_.flops += 2.0 * double(x.dim(0)) * double(w.out_features) * double(w.in_features);
  return in_->linear(x, w);
}

std::vector<Tensor> MeteredBackend::linear_group(const Tensor& x, const std::vector<const LinearWeight*>& ws) {
  std::string name;
  for (const LinearWeight* w : ws) {
    if (!name.empty()) name += '+';
    name += linear_name(*w);
    totals_.weight_bytes += weight_bytes(*w);
    totals_.flops += 2.0 * double(x.dim(0)) * double(w->out_features) * double(w->in_features);
  }
  Scope s(*this, name);
  return in_->linear_group(x, ws);
}

Tensor MeteredBackend::rmsnorm(const Tensor& x, const Tensor& w, float eps) {
  Scope s(*this, "rmsnorm");
  return in_->rmsnorm(x, w, eps);
}

Tensor MeteredBackend::add_rmsnorm(const Tensor& x, Tensor& residual, const Tensor& w, float eps) {
  Scope s(*this, "add_rmsnorm");
  return in_->add_rmsnorm(x, residual, w, eps);
}

Tensor MeteredBackend::layernorm(const Tensor& x, const Tensor& w, const Tensor& b, float eps) {
  Scope s(*this, "layernorm");
  return in_->layernorm(x, w, b, eps);
}

void MeteredBackend::add_inplace(Tensor& y, const Tensor& x) {
  Scope s(*this, "add_inplace");
  in_->add_inplace(y, x);
}

void MeteredBackend::scale_inplace(Tensor& y, float f) {
  Scope s(*this, "scale_inplace");
  in_->scale_inplace(y, f);
}

void MeteredBackend::rope(Tensor& x, int64_t col0, int64_t head_stride, int64_t nheads, int64_t rot_dim,
                          const std::vector<int32_t>& pos, const backend::RopeTable& table,
                          backend::RopeLayout layout) {
  Scope s(*this, "rope");
  in_->rope(x, col0, head_stride, nheads, rot_dim, pos, table, layout);
}

Tensor MeteredBackend::silu_mul(const Tensor& gate, const Tensor& up) {
  Scope s(*this, "silu_mul");
  return in_->silu_mul(gate, up);
}

void MeteredBackend::copy_cols(Tensor& dst, int64_t dst_col0, const Tensor& src, int64_t src_col0, int64_t ncols) {
  Scope s(*this, "copy_cols");
  in_->copy_cols(dst, dst_col0, src, src_col0, ncols);
}

// ---------------------------------------------------------------- KV pools

void MeteredBackend::cache_write(Tensor& pool, int64_t col0, const Tensor& rows, const std::vector<int32_t>& slots) {
  Scope s(*this, "cache_write");
  in_->cache_write(pool, col0, rows, slots);
}

Tensor MeteredBackend::cache_gather(const Tensor& pool, const std::vector<int32_t>& slots) {
  Scope s(*this, "cache_gather");
  return in_->cache_gather(pool, slots);
}

void MeteredBackend::cache_write_fp8(Tensor& pool, const backend::KvFp8Layout& layout, const Tensor& quant,
                                     const Tensor* rest, const std::vector<int32_t>& slots) {
  Scope s(*this, "cache_write_fp8");
  in_->cache_write_fp8(pool, layout, quant, rest, slots);
}

Tensor MeteredBackend::cache_gather_fp8(const Tensor& pool, const backend::KvFp8Layout& layout,
                                        const std::vector<int32_t>& slots) {
  Scope s(*this, "cache_gather_fp8");
  return in_->cache_gather_fp8(pool, layout, slots);
}

// ---------------------------------------------------------------- MLA

Tensor MeteredBackend::mla_absorb_q(const Tensor& q, const LinearWeight& kv_b, int64_t heads, int64_t nope_dim,
                                    int64_t v_dim) {
  Scope s(*this, "mla_absorb_q");
  // Reads the W_UK part of kv_b.
  totals_.weight_bytes += weight_bytes(kv_b) * double(nope_dim) / double(nope_dim + v_dim);
  totals_.flops += 2.0 * double(q.dim(0)) * double(heads) * double(nope_dim) * double(kv_b.in_features);
  return in_->mla_absorb_q(q, kv_b, heads, nope_dim, v_dim);
}

Tensor MeteredBackend::mla_absorb_q_rope(const Tensor& q, const LinearWeight& kv_b, int64_t heads, int64_t nope_dim,
                                         int64_t v_dim, const std::vector<int32_t>& pos, const backend::RopeTable& rope) {
  Scope s(*this, "mla_absorb_q_rope");
  totals_.weight_bytes += weight_bytes(kv_b) * double(nope_dim) / double(nope_dim + v_dim);  // as mla_absorb_q
  totals_.flops += 2.0 * double(q.dim(0)) * double(heads) * double(nope_dim) * double(kv_b.in_features);
  return in_->mla_absorb_q_rope(q, kv_b, heads, nope_dim, v_dim, pos, rope);
}

void MeteredBackend::mla_kv_write(const Tensor& kv, int64_t latent_dim, const Tensor& norm_w, float eps,
                                  const std::vector<int32_t>& pos, const backend::RopeTable& rope, Tensor& pool,
                                  const backend::KvFp8Layout* fp8, const std::vector<int32_t>& slots) {
  Scope s(*this, "mla_kv_write");
  in_->mla_kv_write(kv, latent_dim, norm_w, eps, pos, rope, pool, fp8, slots);
}

void MeteredBackend::indexer_key_write(const Tensor& k, const Tensor& ln_w, const Tensor& ln_b, float eps,
                                       int64_t rot_dim, const std::vector<int32_t>& pos,
                                       const backend::RopeTable& rope, bool hadamard_fp8, Tensor& pool,
                                       const backend::KvFp8Layout* fp8, const std::vector<int32_t>& slots) {
  Scope s(*this, "indexer_key_write");
  in_->indexer_key_write(k, ln_w, ln_b, eps, rot_dim, pos, rope, hadamard_fp8, pool, fp8, slots);
}

Tensor MeteredBackend::mla_absorb_out(const Tensor& o_lat, const LinearWeight& kv_b, int64_t heads,
                                      int64_t nope_dim, int64_t v_dim) {
  Scope s(*this, "mla_absorb_out");
  totals_.weight_bytes += weight_bytes(kv_b) * double(v_dim) / double(nope_dim + v_dim);
  totals_.flops += 2.0 * double(o_lat.dim(0)) * double(heads) * double(v_dim) * double(kv_b.in_features);
  return in_->mla_absorb_out(o_lat, kv_b, heads, nope_dim, v_dim);
}

Tensor MeteredBackend::mla_attention_absorbed(const Tensor& q_abs, const Tensor& kv_pool, const Tensor& index,
                                              const AttnBatch& batch, int64_t latent_dim, float scale) {
  Scope s(*this, "mla_attention_absorbed");
  // Query at position p attends to min(p + 1, K) latent rows (index is -1 padded past them).
  // A row of the pool: D elements, or a packed FP8 row of bytes (U8) holding D values.
  const int64_t T = q_abs.dim(0), K = index.ndim() == 2 ? index.dim(1) : 0, row = kv_pool.row_size();
  const int64_t D = q_abs.ndim() == 3 ? q_abs.dim(2) : row;
  const double heads = T ? double(q_abs.numel()) / double(T) / double(D) : 0.0;
  double keys = 0;
  for (int32_t p : batch.pos_of_token) keys += double(std::min<int64_t>(p + 1, K));
  totals_.kv_bytes += keys * double(row) * double(dtype_size(kv_pool.dtype()));
  totals_.flops += 2.0 * keys * heads * double(D + latent_dim);  // q.k over Dl + Dr, p.v over Dl
  return in_->mla_attention_absorbed(q_abs, kv_pool, index, batch, latent_dim, scale);
}

Tensor MeteredBackend::attention_expanded(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& index,
                                          const AttnBatch& batch, const std::vector<int32_t>& key_row0,
                                          float scale) {
  Scope s(*this, "attention_expanded");
  const int64_t K = index.ndim() == 2 ? index.dim(1) : 0;
  double keys = 0;
  for (int32_t p : batch.pos_of_token) keys += double(std::min<int64_t>(p + 1, K));
  const double per_key = double(k.row_size() + v.row_size());  // all heads
  totals_.kv_bytes += keys * per_key * double(dtype_size(k.dtype()));
  totals_.flops += 2.0 * keys * per_key;
  return in_->attention_expanded(q, k, v, index, batch, key_row0, scale);
}

Tensor MeteredBackend::attention_mha_causal(const Tensor& q, const Tensor& kvb, const Tensor& rope, int64_t rope_col0,
                                            int64_t v_dim, const AttnBatch& batch,
                                            const std::vector<int32_t>& key_row0, float scale) {
  Scope s(*this, "attention_mha_causal");
  const double heads = double(q.dim(1)), qk = double(q.dim(2));
  double keys = 0;  // causal: query at position p reads p + 1 keys
  for (int32_t p : batch.pos_of_token) keys += double(p) + 1;
  // K_nope and V of every head, the shared rope key once per key row
  const double row = heads * double(kvb.row_size() / q.dim(1)) + double(qk - (kvb.row_size() / q.dim(1) - v_dim));
  totals_.kv_bytes += double(kvb.dim(0)) * row * double(dtype_size(kvb.dtype()));
  totals_.flops += 2.0 * keys * heads * (qk + double(v_dim));
  return in_->attention_mha_causal(q, kvb, rope, rope_col0, v_dim, batch, key_row0, scale);
}

// ---------------------------------------------------------------- indexer

Tensor MeteredBackend::indexer_topk(const Tensor& q, const Tensor& w, const Tensor& k_pool, const AttnBatch& batch,
                                    int64_t heads, int64_t head_dim, int64_t topk, bool fp8_values) {
  Scope s(*this, "indexer_topk");
  // A query at position p scores its p + 1 keys only when there are more than topk; a sequence's keys
  // are read once however many of its queries score them.
  std::vector<int64_t> keys_of_seq(batch.page_tables.size(), 0);
  for (size_t t = 0; t < batch.pos_of_token.size(); ++t) {
    const int64_t n = int64_t(batch.pos_of_token[t]) + 1;
    if (n <= topk) continue;
    totals_.flops += 2.0 * double(n) * double(heads) * double(head_dim);
    auto& k = keys_of_seq[size_t(batch.seq_of_token[t])];
    k = std::max(k, n);
  }
  for (int64_t n : keys_of_seq)
    totals_.index_key_bytes += double(n) * double(k_pool.row_size()) * double(dtype_size(k_pool.dtype()));
  return in_->indexer_topk(q, w, k_pool, batch, heads, head_dim, topk, fp8_values);
}

Tensor MeteredBackend::causal_index(const AttnBatch& batch) {
  Scope s(*this, "causal_index");
  return in_->causal_index(batch);
}

void MeteredBackend::hadamard_fp8_round(Tensor& x, int64_t row_len) {
  Scope s(*this, "hadamard_fp8_round");
  in_->hadamard_fp8_round(x, row_len);
}

// ---------------------------------------------------------------- MoE

void MeteredBackend::moe_route(const Tensor& router_logits, const Tensor& bias, const backend::MoeRouting& cfg,
                               Tensor* ids, Tensor* weights) {
  Scope s(*this, "moe_route");
  in_->moe_route(router_logits, bias, cfg, ids, weights);
}

namespace {
double expert_macs(const backend::ExpertWeights& e) {
  return double(e.gate.out_features * e.gate.in_features + e.up.out_features * e.up.in_features +
                e.down.out_features * e.down.in_features);
}
}  // namespace

Tensor MeteredBackend::moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights,
                                   const backend::ExpertSet& experts) {
  return moe_ffn(x, ids, weights, experts, nullptr);
}

Tensor MeteredBackend::moe_ffn(const Tensor& x, const Tensor& ids, const Tensor& weights,
                               const backend::ExpertSet& experts, const backend::ExpertWeights* shared) {
  Tensor y;
  {
    Scope s(*this, "moe_experts");
    if (experts.size()) totals_.flops += 2.0 * double(ids.numel()) * expert_macs(experts.experts()[0]);
    if (shared) {
      totals_.flops += 2.0 * double(x.dim(0)) * expert_macs(*shared);
      totals_.weight_bytes += weight_bytes(shared->gate) + weight_bytes(shared->up) + weight_bytes(shared->down);
    }
    y = shared ? in_->moe_ffn(x, ids, weights, experts, shared) : in_->moe_experts(x, ids, weights, experts);
  }
  // Outside the op's time: reading the routing back costs a sync of its own.
  if (count_experts_) count_experts(ids, experts);
  return y;
}

std::vector<backend::SampledRow> MeteredBackend::sample(Tensor& logits, const backend::SamplingBatch& batch) {
  last_readback_ = Clock::now();  // the step's results come back here (the sampled ids)
  Scope s(*this, "sample");
  return in_->sample(logits, batch);
}

void MeteredBackend::moe_local_ids(Tensor& ids, int32_t first, int32_t count) {
  Scope s(*this, "moe_local_ids");
  in_->moe_local_ids(ids, first, count);
}

void MeteredBackend::count_experts(const Tensor& ids, const backend::ExpertSet& set) {
  const std::vector<backend::ExpertWeights>& experts = set.experts();
  std::vector<int32_t> v(size_t(ids.numel()));
  if (ids.device() == Device::CPU && ids.dtype() == DType::I32) {
    std::copy_n(ids.i32(), v.size(), v.begin());
  } else {
    Tensor h = in_->to_host_f32(ids);
    for (size_t i = 0; i < v.size(); ++i) v[i] = int32_t(h.f32()[i]);
  }
  std::vector<char> seen(experts.size(), 0);
  for (int32_t e : v) {
    if (e == -1) continue;  // another rank's expert
    DS_CHECK(e >= 0 && size_t(e) < experts.size(), "routing chose expert {} of {}", e, experts.size());
    if (seen[size_t(e)]) continue;
    seen[size_t(e)] = 1;
    ++totals_.experts_touched;
    const auto& ew = experts[size_t(e)];
    totals_.weight_bytes += weight_bytes(ew.gate) + weight_bytes(ew.up) + weight_bytes(ew.down);
  }
  ++totals_.moe_layers;
}

// ---------------------------------------------------------------- captured steps

std::unique_ptr<backend::CapturedStep> MeteredBackend::capture(const backend::StepIndex& example,
                                                               int32_t pages_per_seq,
                                                               const std::function<Tensor()>& body) {
  Scope s(*this, "capture");
  return in_->capture(example, pages_per_seq, body);
}

Tensor MeteredBackend::replay(backend::CapturedStep& step, const backend::StepIndex& idx) {
  Scope s(*this, "replay");
  return in_->replay(step, idx);
}

}  // namespace ds::perf
