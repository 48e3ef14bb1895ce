// Loading: validate the whole checkpoint against the manifest first (so a bad file fails in seconds,
// not after an hour of upload), then convert tensor by tensor through the backend.
#include <fmt/format.h>

#include <map>
#include <optional>

#include "model/checkpoint.h"
#include "model/weights.h"
#include "model/weight_slice.h"
#include "model/weights_finite.h"
#include "util/error.h"
#include "util/log.h"
#include "util/progress.h"

namespace ds::model {

namespace {
using backend::HostTensor;

std::string scale_name(const std::string& weight_name) {
  const std::string suffix = ".weight";
  return weight_name.substr(0, weight_name.size() - suffix.size()) + ".weight_scale_inv";
}

std::string shape_str(const std::vector<int64_t>& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

bool is_float(DType t) { return t == DType::F32 || t == DType::BF16 || t == DType::F16; }

// Throws a message naming the tensor and its file when it does not match its spec.
void check_tensor(const WeightSpec& spec, const TensorInfo& t, const Checkpoint& ckpt) {
  DS_CHECK(t.shape == spec.shape, "tensor '{}' in {} has shape {}, expected {}", spec.name, t.file,
           shape_str(t.shape), shape_str(spec.shape));
  if (spec.kind == WeightKind::Linear && t.dtype == DType::F8_E4M3) {
    const TensorInfo* s = ckpt.find(scale_name(spec.name));
    DS_CHECK(s != nullptr, "FP8 tensor '{}' in {} has no '{}'", spec.name, t.file, scale_name(spec.name));
    std::vector<int64_t> want = {(spec.shape[0] + 127) / 128, (spec.shape[1] + 127) / 128};
    DS_CHECK(s->shape == want, "scale '{}' in {} has shape {}, expected {} (one per 128x128 block)", s->name, s->file,
             shape_str(s->shape), shape_str(want));
    DS_CHECK(is_float(s->dtype), "scale '{}' in {} has dtype {}", s->name, s->file, dtype_name(s->dtype));
    return;
  }
  DS_CHECK(is_float(t.dtype), "tensor '{}' in {} has dtype {}; expected {}", spec.name, t.file, dtype_name(t.dtype),
           spec.kind == WeightKind::Linear ? "F8_E4M3, BF16, F16 or F32" : "BF16, F16 or F32");
}

// Every tensor a rank keeps is checked for NaN / infinity on its bytes before the backend converts it.
void check_slice(const SlicedTensor& t, const std::string& file) {
  check_finite(t.w.name, file, t.w.data, t.w.dtype, t.w.shape);
  if (t.scale) check_finite(t.scale->name, file, t.scale->data, t.scale->dtype, t.scale->shape);
}

HostTensor host(const TensorInfo& t) { return HostTensor{t.name, t.dtype, t.shape, t.data}; }

class Loader final : public WeightSource {
 public:
  Loader(const Checkpoint& ckpt, backend::Backend& be, uint64_t total_bytes, bool show_progress) : ckpt_(ckpt), be_(be) {
    if (show_progress) progress_.emplace("loading weights", total_bytes, "B");
  }

  backend::LinearWeight linear(const std::string& name, const Shard& part) override {
    const TensorInfo& t = ckpt_.get(name);
    const TensorInfo* s = t.dtype == DType::F8_E4M3 ? &ckpt_.get(scale_name(name)) : nullptr;
    HostTensor hs = s ? host(*s) : HostTensor{};
    SlicedTensor sl = slice_linear(host(t), s ? &hs : nullptr, part);
    check_slice(sl, t.file);
    auto w = be_.load_linear(sl.w, sl.scale ? &*sl.scale : nullptr);
    advance(t.nbytes + (s ? s->nbytes : 0));
    return w;
  }
  Tensor f32(const std::string& name, const Shard& part) override {
    const TensorInfo& t = ckpt_.get(name);
    SlicedTensor sl = slice_tensor(host(t), part);
    check_slice(sl, t.file);
    Tensor out = be_.load_tensor_f32(sl.w);
    advance(t.nbytes);
    return out;
  }
  void skip(const std::string& name) override {
    const TensorInfo& t = ckpt_.get(name);
    advance(t.nbytes + (t.dtype == DType::F8_E4M3 ? ckpt_.get(scale_name(name)).nbytes : 0));
  }
  backend::Backend& backend() override { return be_; }
  void finish() {
    if (progress_) progress_->finish();
  }

 private:
  // The bar shows how much of the checkpoint has been walked (a rank reads only its part of it).
  void advance(uint64_t bytes) {
    if (progress_) progress_->add(bytes);
  }
  const Checkpoint& ckpt_;
  backend::Backend& be_;
  std::optional<Progress> progress_;
};

LayerWeights load_layer(const ModelConfig& c, int64_t l, WeightSource& ld, const TensorParallel& tp) {
  const std::string p = fmt::format("model.layers.{}.", l);
  LayerWeights lw;
  lw.input_norm = ld.f32(p + "input_layernorm.weight");
  lw.post_attn_norm = ld.f32(p + "post_attention_layernorm.weight");
  auto& a = lw.attn;
  // Heads [h0, h1) of this rank (of its attention group under DP attention): their rows of q_b and
  // kv_b, their columns of o_proj.
  const auto [h0, h1] = tp.split_attn(c.num_attention_heads);
  const int64_t dq = c.qk_nope_head_dim + c.qk_rope_head_dim, dkv = c.qk_nope_head_dim + c.v_head_dim;
  auto rows_if = [](bool cut, int64_t b, int64_t e) { return cut ? Shard::rows(b, e) : Shard{}; };
  auto cols_if = [](bool cut, int64_t b, int64_t e) { return cut ? Shard::cols(b, e) : Shard{}; };
  const bool cut_attn = tp.attn_size() > 1;
  auto rows = [&](int64_t b, int64_t e) { return rows_if(cut_attn, b, e); };
  auto cols = [&](int64_t b, int64_t e) { return cols_if(cut_attn, b, e); };
  a.q_a = ld.linear(p + "self_attn.q_a_proj.weight");
  a.q_a_norm = ld.f32(p + "self_attn.q_a_layernorm.weight");
  a.q_b = ld.linear(p + "self_attn.q_b_proj.weight", rows(h0 * dq, h1 * dq));
  a.kv_a = ld.linear(p + "self_attn.kv_a_proj_with_mqa.weight");
  a.kv_a_norm = ld.f32(p + "self_attn.kv_a_layernorm.weight");
  a.kv_b = ld.linear(p + "self_attn.kv_b_proj.weight", rows(h0 * dkv, h1 * dkv));
  a.o = ld.linear(p + "self_attn.o_proj.weight", cols(h0 * c.v_head_dim, h1 * c.v_head_dim));
  if (c.has_indexer()) {  // replicated: every rank selects the same keys
    a.idx_wq_b = ld.linear(p + "self_attn.indexer.wq_b.weight");
    a.idx_wk = ld.linear(p + "self_attn.indexer.wk.weight");
    a.idx_k_norm_w = ld.f32(p + "self_attn.indexer.k_norm.weight");
    a.idx_k_norm_b = ld.f32(p + "self_attn.indexer.k_norm.bias");
    a.idx_weights_proj = ld.linear(p + "self_attn.indexer.weights_proj.weight");
  }
  // An MLP of width `width` cut column- then row-parallel over all ranks (over_all) or over the
  // attention group: gate/up rows and down columns [i0, i1).
  auto mlp = [&](const std::string& q, int64_t width, bool over_all) {
    const auto [i0, i1] = over_all ? tp.split(width) : tp.split_attn(width);
    const bool cut = over_all ? !tp.single() : cut_attn;
    return backend::ExpertWeights{ld.linear(q + "gate_proj.weight", rows_if(cut, i0, i1)),
                                  ld.linear(q + "up_proj.weight", rows_if(cut, i0, i1)),
                                  ld.linear(q + "down_proj.weight", cols_if(cut, i0, i1))};
  };
  auto& f = lw.ffn;
  f.moe = c.is_moe_layer(l);
  if (!f.moe) {
    f.dense = mlp(p + "mlp.", c.intermediate_size, !tp.dp_attention() || tp.ffn_across_dp(false));
    return lw;
  }
  f.router = ld.linear(p + "mlp.gate.weight");
  f.router_bias = ld.f32(p + "mlp.gate.e_score_correction_bias");
  // Routed experts: every expert sliced like the MLP, or (expert parallel) whole experts [e0, e1) here
  // and none of the others.
  const auto [e0, e1] = tp.expert_parallel ? tp.split(c.n_routed_experts) : std::pair<int64_t, int64_t>{0, c.n_routed_experts};
  std::vector<backend::ExpertWeights> experts;
  for (int64_t e = 0; e < c.n_routed_experts; ++e) {
    const std::string ep = fmt::format("{}mlp.experts.{}.", p, e);
    if (e < e0 || e >= e1) {
      for (const char* m : {"gate_proj.weight", "up_proj.weight", "down_proj.weight"}) ld.skip(ep + m);
      continue;
    }
    if (tp.expert_parallel) {
      experts.push_back({ld.linear(ep + "gate_proj.weight"), ld.linear(ep + "up_proj.weight"),
                         ld.linear(ep + "down_proj.weight")});
    } else {
      experts.push_back(mlp(ep, c.moe_intermediate_size, true));
    }
  }
  f.experts = ld.backend().prepare_experts(std::move(experts));
  f.expert_begin = e0;
  if (c.n_shared_experts > 0)
    f.dense = mlp(p + "mlp.shared_experts.", c.moe_intermediate_size * c.n_shared_experts, true);
  return lw;
}

// MTP layers are optional as a whole; their copies of the embedding and head are optional too.
bool mtp_present(const ModelConfig& c, const Checkpoint& ckpt) {
  if (c.num_nextn_predict_layers == 0) return false;
  const std::string prefix = fmt::format("model.layers.{}.", c.num_hidden_layers);
  for (const auto& spec : weight_manifest(c, true))
    if (spec.name.rfind(prefix, 0) == 0 && ckpt.find(spec.name)) return true;
  return false;  // with any MTP tensor present, a partial layer fails validation naming what is missing
}

bool optional_mtp_copy(const std::string& name) {
  return name.ends_with("shared_head.head.weight") || name.ends_with(".embed_tokens.weight");
}
}  // namespace

ModelWeights load_weights(const ModelConfig& c, const Checkpoint& ckpt, backend::Backend& be,
                          const TensorParallel& tp) {
  const bool with_mtp = mtp_present(c, ckpt);
  if (c.num_nextn_predict_layers > 0 && !with_mtp)
    spdlog::warn("checkpoint {} has no MTP layer (model.layers.{}.*): speculative decoding is unavailable",
                 ckpt.dir(), c.num_hidden_layers);
  auto manifest = weight_manifest(c, with_mtp);
  std::vector<std::string> missing;
  uint64_t bytes = 0;
  for (const auto& spec : manifest) {
    const TensorInfo* t = ckpt.find(spec.name);
    const bool is_mtp_copy = spec.name.rfind("model.layers.", 0) == 0 && optional_mtp_copy(spec.name);
    if (!t) {
      if (!is_mtp_copy) missing.push_back(spec.name);
      continue;
    }
    check_tensor(spec, *t, ckpt);
    if (!is_mtp_copy) bytes += t->nbytes;
    if (t->dtype == DType::F8_E4M3) bytes += ckpt.get(scale_name(spec.name)).nbytes;
  }
  if (!missing.empty()) {
    std::string list;
    for (size_t i = 0; i < missing.size() && i < 8; ++i) list += "\n  " + missing[i];
    if (missing.size() > 8) list += fmt::format("\n  ... and {} more", missing.size() - 8);
    fail("checkpoint {} is missing {} tensor(s) the model needs:{}", ckpt.dir(), missing.size(), list);
  }

  Loader ld(ckpt, be, bytes, tp.rank == 0);
  ModelWeights w = assemble_weights(c, with_mtp, ld, tp);
  ld.finish();
  return w;
}

ModelWeights assemble_weights(const ModelConfig& c, bool with_mtp, WeightSource& ld, const TensorParallel& tp) {
  tp.validate(c);
  ModelWeights w;
  // The embedding and the LM head are split over the vocabulary (over the attention group under DP
  // attention): rows [v0, v1) on this rank.
  const auto [v0, v1] = tp.split_attn(c.vocab_size);
  const Shard vocab_part = tp.attn_size() > 1 ? Shard::rows(v0, v1) : Shard{};
  w.embed = ld.f32("model.embed_tokens.weight", vocab_part);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) w.layers.push_back(load_layer(c, l, ld, tp));
  w.final_norm = ld.f32("model.norm.weight");
  w.lm_head = ld.linear("lm_head.weight", vocab_part);
  if (with_mtp)
    for (int64_t m = 0; m < c.num_nextn_predict_layers; ++m) {
      int64_t l = c.num_hidden_layers + m;
      const std::string p = fmt::format("model.layers.{}.", l);
      MtpWeights mw;
      mw.enorm = ld.f32(p + "enorm.weight");
      mw.hnorm = ld.f32(p + "hnorm.weight");
      mw.eh_proj = ld.linear(p + "eh_proj.weight");
      mw.head_norm = ld.f32(p + "shared_head.norm.weight");
      // DeepSeek ships copies of the embedding and lm_head in the MTP layer ("shares parameters");
      // they are checked above but the main ones are used, saving two vocab x hidden tables.
      mw.head = w.lm_head;
      mw.embed = w.embed;
      mw.layer = load_layer(c, l, ld, tp);
      w.mtp.push_back(std::move(mw));
    }
  return w;
}

}  // namespace ds::model
