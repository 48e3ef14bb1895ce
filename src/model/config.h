// ModelConfig: the HF config.json of a DeepSeek-V3.2 / V3 checkpoint, parsed and validated once,
// so that the forward and the weight loader can trust every field.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace ds::model {

// RoPE and its YaRN extension. HF configs spell it either as `rope_theta` + `rope_scaling` (the
// hub's config.json) or as one `rope_parameters` dict (transformers 5); both parse to this.
struct RopeConfig {
  double theta = 10000.0;
  std::string type = "default";  // "default" (plain RoPE) or "yarn"
  // YaRN only (type == "yarn"):
  double factor = 1.0;
  int64_t original_max_position_embeddings = 0;
  double beta_fast = 32.0;  // HF's defaults when absent
  double beta_slow = 1.0;
  // 0 means "absent": HF treats a missing or zero mscale / mscale_all_dim alike.
  double mscale = 0.0;
  double mscale_all_dim = 0.0;

  bool is_yarn() const { return type == "yarn"; }
  bool operator==(const RopeConfig&) const = default;
};

// Block-scaled FP8 weights (DeepSeek's format: e4m3 values, one fp32 scale per 128x128 block).
struct QuantConfig {
  std::string method;                 // "" (unquantized) or "fp8"
  std::string fmt = "e4m3";
  std::string activation_scheme = "dynamic";
  std::vector<int64_t> weight_block_size = {128, 128};
  std::string scale_fmt;              // "", "float" or "ue8m0" (activation scales rounded to powers of two)
  std::vector<std::string> modules_to_not_convert;  // transformers' list of unquantized modules

  bool is_fp8() const { return method == "fp8"; }
  bool ue8m0_scales() const { return scale_fmt == "ue8m0"; }
  bool operator==(const QuantConfig&) const = default;
};

struct ModelConfig {
  std::string model_type;  // "deepseek_v32" (with the DSA indexer) or "deepseek_v3"
  std::string torch_dtype = "bfloat16";

  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;      // dense MLP layers
  int64_t moe_intermediate_size = 0;  // each routed expert and each shared expert
  int64_t num_hidden_layers = 0;
  int64_t num_nextn_predict_layers = 0;  // MTP layers, numbered from num_hidden_layers
  int64_t num_attention_heads = 0;

  // MLA
  int64_t q_lora_rank = 0;
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;

  // MoE
  int64_t n_routed_experts = 0;
  int64_t n_shared_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t n_group = 0;
  int64_t topk_group = 0;
  std::string topk_method;   // "noaux_tc", "greedy" or "group_limited_greedy"
  int64_t first_k_dense_replace = 0;
  int64_t moe_layer_freq = 1;
  double routed_scaling_factor = 1.0;
  bool norm_topk_prob = true;
  std::string scoring_func;  // "sigmoid" or "softmax"

  std::string hidden_act;    // "silu"
  double rms_norm_eps = 1e-6;

  // DSA lightning indexer (deepseek_v32 only)
  int64_t index_n_heads = 0;
  int64_t index_head_dim = 0;
  int64_t index_topk = 0;

  int64_t max_position_embeddings = 0;
  int64_t bos_token_id = -1;          // -1: none
  std::vector<int64_t> eos_token_ids;  // json: an int or a list
  bool tie_word_embeddings = false;

  RopeConfig rope;
  QuantConfig quant;

  bool has_indexer() const { return model_type == "deepseek_v32"; }
  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  // Layer l uses the MoE FFN (else the dense MLP). MTP layers (l >= num_hidden_layers) are MoE.
  bool is_moe_layer(int64_t l) const;
  // YaRN attention multiplier m = 0.1 * mscale_all_dim * ln(factor) + 1 (1 without YaRN, with
  // factor <= 1 or without mscale_all_dim), as transformers' DeepseekV3/V32 attention uses it.
  double yarn_mscale() const;
  // qk_head_dim^-0.5 * m^2: the attention softmax scale of both the MHA and the absorbed path.
  double softmax_scale() const;
  // The multiplier transformers applies to cos/sin for YaRN: mscale(factor, mscale) /
  // mscale(factor, mscale_all_dim) when both are given, else 0.1 ln(factor) + 1. (1.0 for the
  // real checkpoints; DeepSeek's reference applies none.)
  double rope_attention_factor() const;

  bool operator==(const ModelConfig&) const = default;
};

// Parses and validates; throws ds::Error naming the field and the bad value.
ModelConfig parse_config(const nlohmann::json& j);
// Reads DIR/config.json.
ModelConfig load_config(const std::string& model_dir);
// HF field names (rope_theta + rope_scaling form), as make-model writes config.json.
nlohmann::json to_json(const ModelConfig& c);

}  // namespace ds::model
