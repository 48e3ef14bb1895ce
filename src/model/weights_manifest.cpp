// The checkpoint's tensor list, with HF names and shapes (spec/dsv32.md section 2).
#include <fmt/format.h>

#include "model/weights.h"

namespace ds::model {

namespace {
void add_layer(const ModelConfig& c, int64_t l, std::vector<WeightSpec>& out) {
  const std::string p = fmt::format("model.layers.{}.", l);
  const int64_t H = c.hidden_size, heads = c.num_attention_heads;
  auto lin = [&](const std::string& n, int64_t o, int64_t i) { out.push_back({p + n, {o, i}, WeightKind::Linear, true}); };
  auto vec = [&](const std::string& n, int64_t d) { out.push_back({p + n, {d}, WeightKind::Vector, false}); };
  vec("input_layernorm.weight", H);
  vec("post_attention_layernorm.weight", H);
  lin("self_attn.q_a_proj.weight", c.q_lora_rank, H);
  vec("self_attn.q_a_layernorm.weight", c.q_lora_rank);
  lin("self_attn.q_b_proj.weight", heads * c.qk_head_dim(), c.q_lora_rank);
  lin("self_attn.kv_a_proj_with_mqa.weight", c.kv_lora_rank + c.qk_rope_head_dim, H);
  vec("self_attn.kv_a_layernorm.weight", c.kv_lora_rank);
  lin("self_attn.kv_b_proj.weight", heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank);
  lin("self_attn.o_proj.weight", H, heads * c.v_head_dim);
  if (c.has_indexer()) {
    lin("self_attn.indexer.wq_b.weight", c.index_n_heads * c.index_head_dim, c.q_lora_rank);
    lin("self_attn.indexer.wk.weight", c.index_head_dim, H);
    vec("self_attn.indexer.k_norm.weight", c.index_head_dim);
    vec("self_attn.indexer.k_norm.bias", c.index_head_dim);
    out.push_back({p + "self_attn.indexer.weights_proj.weight", {c.index_n_heads, H}, WeightKind::Dense, false});
  }
  if (!c.is_moe_layer(l)) {
    lin("mlp.gate_proj.weight", c.intermediate_size, H);
    lin("mlp.up_proj.weight", c.intermediate_size, H);
    lin("mlp.down_proj.weight", H, c.intermediate_size);
    return;
  }
  const int64_t I = c.moe_intermediate_size, E = c.n_routed_experts;
  out.push_back({p + "mlp.gate.weight", {E, H}, WeightKind::Dense, false});
  vec("mlp.gate.e_score_correction_bias", E);
  for (int64_t e = 0; e < E; ++e) {
    const std::string ep = fmt::format("mlp.experts.{}.", e);
    lin(ep + "gate_proj.weight", I, H);
    lin(ep + "up_proj.weight", I, H);
    lin(ep + "down_proj.weight", H, I);
  }
  if (c.n_shared_experts > 0) {
    const int64_t S = I * c.n_shared_experts;
    lin("mlp.shared_experts.gate_proj.weight", S, H);
    lin("mlp.shared_experts.up_proj.weight", S, H);
    lin("mlp.shared_experts.down_proj.weight", H, S);
  }
}
}  // namespace

std::vector<WeightSpec> weight_manifest(const ModelConfig& c, bool include_mtp) {
  std::vector<WeightSpec> out;
  const int64_t V = c.vocab_size, H = c.hidden_size;
  out.push_back({"model.embed_tokens.weight", {V, H}, WeightKind::Dense, false});
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) add_layer(c, l, out);
  out.push_back({"model.norm.weight", {H}, WeightKind::Vector, false});
  out.push_back({"lm_head.weight", {V, H}, WeightKind::Linear, false});
  if (include_mtp)
    for (int64_t m = 0; m < c.num_nextn_predict_layers; ++m) {
      int64_t l = c.num_hidden_layers + m;
      const std::string p = fmt::format("model.layers.{}.", l);
      out.push_back({p + "enorm.weight", {H}, WeightKind::Vector, false});
      out.push_back({p + "hnorm.weight", {H}, WeightKind::Vector, false});
      out.push_back({p + "eh_proj.weight", {H, 2 * H}, WeightKind::Linear, false});
      out.push_back({p + "shared_head.norm.weight", {H}, WeightKind::Vector, false});
      out.push_back({p + "shared_head.head.weight", {V, H}, WeightKind::Linear, false});
      out.push_back({p + "embed_tokens.weight", {V, H}, WeightKind::Dense, false});
      add_layer(c, l, out);
    }
  return out;
}

}  // namespace ds::model
