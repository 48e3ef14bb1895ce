#include "model/config.h"

#include <cmath>
#include <fstream>
#include <set>

#include "util/error.h"

namespace ds::model {
namespace {

using nlohmann::json;

// A value for an error message: short JSON, cut if long.
std::string show(const json& v) {
  std::string s = v.dump();
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

// Typed access to one JSON object; `prefix` makes nested names read "rope_scaling.factor".
class Fields {
 public:
  Fields(const json& obj, std::string prefix) : obj_(obj), prefix_(std::move(prefix)) {}

  bool has(const char* key) const { return obj_.contains(key) && !obj_.at(key).is_null(); }
  std::string name(const char* key) const { return prefix_ + key; }
  const json& at(const char* key) const { return obj_.at(key); }

  int64_t req_int(const char* key) const {
    if (!has(key)) fail("config: missing required field '{}'", name(key));
    return as_int(key);
  }
  int64_t opt_int(const char* key, int64_t def) const { return has(key) ? as_int(key) : def; }

  double req_num(const char* key) const {
    if (!has(key)) fail("config: missing required field '{}'", name(key));
    return as_num(key);
  }
  double opt_num(const char* key, double def) const { return has(key) ? as_num(key) : def; }

  bool opt_bool(const char* key, bool def) const {
    if (!has(key)) return def;
    const json& v = at(key);
    if (!v.is_boolean()) fail("config: field '{}' must be true or false, got {}", name(key), show(v));
    return v.get<bool>();
  }

  std::string opt_str(const char* key, const std::string& def) const {
    if (!has(key)) return def;
    const json& v = at(key);
    if (!v.is_string()) fail("config: field '{}' must be a string, got {}", name(key), show(v));
    return v.get<std::string>();
  }

  // A string field restricted to a few values.
  std::string opt_choice(const char* key, const std::string& def,
                         std::initializer_list<const char*> allowed) const {
    std::string s = opt_str(key, def);
    for (const char* a : allowed)
      if (s == a) return s;
    std::string list;
    for (const char* a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
    fail("config: field '{}' has unsupported value \"{}\" (supported: {})", name(key), s, list);
  }

  // An integer or a list of integers.
  std::vector<int64_t> int_list(const char* key) const {
    const json& v = at(key);
    std::vector<int64_t> out;
    if (v.is_number_integer()) {
      out.push_back(v.get<int64_t>());
    } else if (v.is_array() && !v.empty()) {
      for (const json& e : v) {
        if (!e.is_number_integer())
          fail("config: field '{}' must be an integer or a list of integers, got {}", name(key), show(v));
        out.push_back(e.get<int64_t>());
      }
    } else {
      fail("config: field '{}' must be an integer or a non-empty list of integers, got {}", name(key),
           show(v));
    }
    return out;
  }

 private:
  int64_t as_int(const char* key) const {
    const json& v = at(key);
    // Unsigned values above int64 range would wrap: refuse them too.
    if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX)))
      fail("config: field '{}' must be an integer, got {}", name(key), show(v));
    return v.get<int64_t>();
  }
  double as_num(const char* key) const {
    const json& v = at(key);
    if (!v.is_number()) fail("config: field '{}' must be a number, got {}", name(key), show(v));
    double d = v.get<double>();
    if (!std::isfinite(d)) fail("config: field '{}' must be finite, got {}", name(key), show(v));
    return d;
  }

  const json& obj_;
  std::string prefix_;
};

void check_positive(const char* field, int64_t v) {
  if (v <= 0) fail("config: field '{}' must be > 0, got {}", field, v);
}
void check_non_negative(const char* field, int64_t v) {
  if (v < 0) fail("config: field '{}' must be >= 0, got {}", field, v);
}

RopeConfig parse_rope(const json& j) {
  RopeConfig r;
  // transformers 5 keeps everything in `rope_parameters` (rope_theta inside); the hub's
  // config.json has `rope_theta` beside an optional `rope_scaling`.
  const json* params = nullptr;
  std::string prefix;
  if (j.contains("rope_parameters") && !j.at("rope_parameters").is_null()) {
    params = &j.at("rope_parameters");
    prefix = "rope_parameters.";
    if (!params->is_object())
      fail("config: field 'rope_parameters' must be an object, got {}", show(*params));
    // HF's default_theta is 10000 when rope_theta is absent.
    r.theta = Fields(*params, prefix).opt_num("rope_theta", Fields(j, "").opt_num("rope_theta", 10000.0));
  } else {
    r.theta = Fields(j, "").opt_num("rope_theta", 10000.0);
    if (j.contains("rope_scaling") && !j.at("rope_scaling").is_null()) {
      params = &j.at("rope_scaling");
      prefix = "rope_scaling.";
      if (!params->is_object())
        fail("config: field 'rope_scaling' must be an object, got {}", show(*params));
    }
  }
  if (!(r.theta > 0)) fail("config: field 'rope_theta' must be > 0, got {}", r.theta);
  if (!params) return r;

  Fields p(*params, prefix);
  // `type` is the old spelling of `rope_type`; transformers may write both.
  const char* type_key = p.has("rope_type") ? "rope_type" : "type";
  r.type = p.opt_choice(type_key, "default", {"default", "yarn"});
  if (p.has("rope_type") && p.has("type") && p.opt_str("type", "") != r.type)
    fail("config: '{}type' (\"{}\") disagrees with '{}rope_type' (\"{}\")", prefix, p.opt_str("type", ""),
         prefix, r.type);
  if (!r.is_yarn()) return r;

  r.factor = p.req_num("factor");
  if (!(r.factor >= 1.0)) fail("config: field '{}' must be >= 1, got {}", p.name("factor"), r.factor);
  r.original_max_position_embeddings = p.req_int("original_max_position_embeddings");
  check_positive(p.name("original_max_position_embeddings").c_str(), r.original_max_position_embeddings);
  r.beta_fast = p.opt_num("beta_fast", 32.0);
  r.beta_slow = p.opt_num("beta_slow", 1.0);
  if (!(r.beta_fast > 0)) fail("config: field '{}' must be > 0, got {}", p.name("beta_fast"), r.beta_fast);
  if (!(r.beta_slow > 0)) fail("config: field '{}' must be > 0, got {}", p.name("beta_slow"), r.beta_slow);
  r.mscale = p.opt_num("mscale", 0.0);
  r.mscale_all_dim = p.opt_num("mscale_all_dim", 0.0);
  if (r.mscale < 0) fail("config: field '{}' must be >= 0, got {}", p.name("mscale"), r.mscale);
  if (r.mscale_all_dim < 0)
    fail("config: field '{}' must be >= 0, got {}", p.name("mscale_all_dim"), r.mscale_all_dim);
  return r;
}

QuantConfig parse_quant(const json& j) {
  QuantConfig q;
  if (!j.contains("quantization_config") || j.at("quantization_config").is_null()) return q;
  const json& qj = j.at("quantization_config");
  if (!qj.is_object()) fail("config: field 'quantization_config' must be an object, got {}", show(qj));
  Fields f(qj, "quantization_config.");
  if (!f.has("quant_method")) fail("config: missing required field 'quantization_config.quant_method'");
  q.method = f.opt_choice("quant_method", "", {"fp8"});
  // fmt and scale_fmt are DeepSeek's own keys; transformers' FP8 config writes neither, and
  // defaults activation_scheme to "dynamic" and weight_block_size to [128, 128].
  q.fmt = f.opt_choice("fmt", "e4m3", {"e4m3"});
  q.activation_scheme = f.opt_choice("activation_scheme", "dynamic", {"dynamic"});
  // Newer transformers write scale_fmt "float" (plain amax/448 scales), the same as none.
  q.scale_fmt = f.opt_choice("scale_fmt", "", {"", "float", "ue8m0"});
  if (qj.contains("weight_block_size")) {  // null would mean per-tensor scales: refused too
    const json& b = qj.at("weight_block_size");
    if (b != json::array({128, 128}))
      fail("config: field 'quantization_config.weight_block_size' must be [128, 128], got {}", show(b));
  }
  if (f.has("modules_to_not_convert")) {
    const json& m = f.at("modules_to_not_convert");
    if (!m.is_array())
      fail("config: field 'quantization_config.modules_to_not_convert' must be a list of strings, got {}",
           show(m));
    for (const json& e : m) {
      if (!e.is_string())
        fail("config: field 'quantization_config.modules_to_not_convert' must be a list of strings, got {}",
             show(m));
      q.modules_to_not_convert.push_back(e.get<std::string>());
    }
  }
  return q;
}

// transformers 5 writes the dense/MoE pattern out; it must agree with what we derive.
void check_mlp_layer_types(const json& j, const ModelConfig& c) {
  if (!j.contains("mlp_layer_types") || j.at("mlp_layer_types").is_null()) return;
  const json& t = j.at("mlp_layer_types");
  if (!t.is_array() || int64_t(t.size()) != c.num_hidden_layers)
    fail("config: field 'mlp_layer_types' must be a list of num_hidden_layers ({}) strings, got {}",
         c.num_hidden_layers, show(t));
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const json& e = t[size_t(l)];
    const char* want = c.is_moe_layer(l) ? "sparse" : "dense";
    if (!e.is_string() || e.get<std::string>() != want)
      fail("config: field 'mlp_layer_types[{}]' is {} but first_k_dense_replace={} and moe_layer_freq={} "
           "make layer {} \"{}\"",
           l, show(e), c.first_k_dense_replace, c.moe_layer_freq, l, want);
  }
}

void validate(const ModelConfig& c) {
  check_positive("vocab_size", c.vocab_size);
  check_positive("hidden_size", c.hidden_size);
  check_positive("intermediate_size", c.intermediate_size);
  check_positive("moe_intermediate_size", c.moe_intermediate_size);
  check_positive("num_hidden_layers", c.num_hidden_layers);
  check_non_negative("num_nextn_predict_layers", c.num_nextn_predict_layers);
  check_positive("num_attention_heads", c.num_attention_heads);
  check_positive("q_lora_rank", c.q_lora_rank);
  check_positive("kv_lora_rank", c.kv_lora_rank);
  check_positive("qk_nope_head_dim", c.qk_nope_head_dim);
  check_positive("qk_rope_head_dim", c.qk_rope_head_dim);
  if (c.qk_rope_head_dim % 2)
    fail("config: field 'qk_rope_head_dim' must be even (RoPE rotates pairs), got {}", c.qk_rope_head_dim);
  check_positive("v_head_dim", c.v_head_dim);
  check_positive("n_routed_experts", c.n_routed_experts);
  check_non_negative("n_shared_experts", c.n_shared_experts);
  check_positive("num_experts_per_tok", c.num_experts_per_tok);
  check_positive("n_group", c.n_group);
  check_positive("topk_group", c.topk_group);
  check_non_negative("first_k_dense_replace", c.first_k_dense_replace);
  check_positive("moe_layer_freq", c.moe_layer_freq);
  check_positive("max_position_embeddings", c.max_position_embeddings);
  if (!(c.routed_scaling_factor > 0))
    fail("config: field 'routed_scaling_factor' must be > 0, got {}", c.routed_scaling_factor);
  if (!(c.rms_norm_eps > 0)) fail("config: field 'rms_norm_eps' must be > 0, got {}", c.rms_norm_eps);

  if (c.n_routed_experts % c.n_group)
    fail("config: field 'n_routed_experts' ({}) must be a multiple of 'n_group' ({})", c.n_routed_experts,
         c.n_group);
  if (c.topk_group > c.n_group)
    fail("config: field 'topk_group' ({}) must be <= 'n_group' ({})", c.topk_group, c.n_group);
  int64_t reachable = c.topk_group * (c.n_routed_experts / c.n_group);
  if (c.num_experts_per_tok > reachable)
    fail("config: field 'num_experts_per_tok' ({}) exceeds the {} experts in topk_group={} groups of {}",
         c.num_experts_per_tok, reachable, c.topk_group, c.n_routed_experts / c.n_group);

  if (c.has_indexer()) {
    check_positive("index_n_heads", c.index_n_heads);
    check_positive("index_head_dim", c.index_head_dim);
    check_positive("index_topk", c.index_topk);
    if (c.index_head_dim < c.qk_rope_head_dim)
      fail("config: field 'index_head_dim' ({}) must be >= 'qk_rope_head_dim' ({}): the indexer head is "
           "a rope part plus a nope part",
           c.index_head_dim, c.qk_rope_head_dim);
  }

  if (c.bos_token_id >= c.vocab_size || c.bos_token_id < -1)
    fail("config: field 'bos_token_id' ({}) is outside the vocabulary (vocab_size {})", c.bos_token_id,
         c.vocab_size);
  for (int64_t e : c.eos_token_ids)
    if (e < 0 || e >= c.vocab_size)
      fail("config: field 'eos_token_id' ({}) is outside the vocabulary (vocab_size {})", e, c.vocab_size);

  // FP8 widths need not be multiples of 128: DeepSeek's format has partial edge blocks (576-row
  // kv_a_proj), and activation quantisation handles a partial last group of 128 the same way.
}

}  // namespace

bool ModelConfig::is_moe_layer(int64_t l) const {
  if (l >= num_hidden_layers) return true;
  return l >= first_k_dense_replace && l % moe_layer_freq == 0;
}

double ModelConfig::yarn_mscale() const {
  if (!rope.is_yarn() || rope.factor <= 1.0 || rope.mscale_all_dim == 0.0) return 1.0;
  return 0.1 * rope.mscale_all_dim * std::log(rope.factor) + 1.0;
}

double ModelConfig::softmax_scale() const {
  double m = yarn_mscale();
  return m * m / std::sqrt(double(qk_head_dim()));
}

double ModelConfig::rope_attention_factor() const {
  if (!rope.is_yarn()) return 1.0;
  auto get_mscale = [&](double m) { return rope.factor <= 1.0 ? 1.0 : 0.1 * m * std::log(rope.factor) + 1.0; };
  if (rope.mscale != 0.0 && rope.mscale_all_dim != 0.0) return get_mscale(rope.mscale) / get_mscale(rope.mscale_all_dim);
  return get_mscale(1.0);
}

ModelConfig parse_config(const json& j) {
  if (!j.is_object()) fail("config: expected a JSON object, got {}", show(j));
  Fields f(j, "");
  ModelConfig c;
  if (!f.has("model_type")) fail("config: missing required field 'model_type'");
  c.model_type = f.opt_choice("model_type", "", {"deepseek_v32", "deepseek_v3"});
  // transformers 5 renamed torch_dtype to dtype. Informational only (tensors carry their own
  // dtypes), so any spelling is kept.
  c.torch_dtype = f.opt_str(f.has("dtype") ? "dtype" : "torch_dtype", "bfloat16");

  // HF's config classes default every shape field to the 671B model. We require them instead:
  // a silently defaulted shape would mis-read any other checkpoint.
  c.vocab_size = f.req_int("vocab_size");
  c.hidden_size = f.req_int("hidden_size");
  c.intermediate_size = f.req_int("intermediate_size");
  c.moe_intermediate_size = f.req_int("moe_intermediate_size");
  c.num_hidden_layers = f.req_int("num_hidden_layers");
  c.num_attention_heads = f.req_int("num_attention_heads");
  c.q_lora_rank = f.req_int("q_lora_rank");
  c.kv_lora_rank = f.req_int("kv_lora_rank");
  c.qk_nope_head_dim = f.req_int("qk_nope_head_dim");
  c.qk_rope_head_dim = f.req_int("qk_rope_head_dim");
  c.v_head_dim = f.req_int("v_head_dim");
  c.n_routed_experts = f.req_int("n_routed_experts");
  c.n_shared_experts = f.req_int("n_shared_experts");
  c.num_experts_per_tok = f.req_int("num_experts_per_tok");
  if (c.has_indexer()) {
    c.index_n_heads = f.req_int("index_n_heads");
    c.index_head_dim = f.req_int("index_head_dim");
    c.index_topk = f.opt_int("index_topk", 2048);  // HF DeepseekV32Config default
  }

  // Defaults below are those of HF's DeepseekV3Config / DeepseekV32Config.
  c.n_group = f.opt_int("n_group", 8);
  c.topk_group = f.opt_int("topk_group", 4);
  c.first_k_dense_replace = f.opt_int("first_k_dense_replace", 3);
  c.routed_scaling_factor = f.opt_num("routed_scaling_factor", 2.5);
  c.norm_topk_prob = f.opt_bool("norm_topk_prob", true);
  c.hidden_act = f.opt_choice("hidden_act", "silu", {"silu"});
  c.rms_norm_eps = f.opt_num("rms_norm_eps", 1e-6);
  c.max_position_embeddings = f.opt_int("max_position_embeddings", c.has_indexer() ? 163840 : 4096);
  c.bos_token_id = f.opt_int("bos_token_id", 0);
  if (j.contains("bos_token_id") && j.at("bos_token_id").is_null()) c.bos_token_id = -1;
  c.eos_token_ids = f.has("eos_token_id") ? f.int_list("eos_token_id") : std::vector<int64_t>{1};
  if (j.contains("eos_token_id") && j.at("eos_token_id").is_null()) c.eos_token_ids.clear();
  c.tie_word_embeddings = f.opt_bool("tie_word_embeddings", false);

  // Not fields of HF's classes: its modeling code hard-wires sigmoid scoring with the
  // noaux_tc bias, every layer from first_k_dense_replace on MoE, and no MTP layer; configs
  // written by transformers may therefore lack them, and these defaults mean the same.
  c.scoring_func = f.opt_choice("scoring_func", "sigmoid", {"sigmoid", "softmax"});
  c.topk_method = f.opt_choice("topk_method", "noaux_tc", {"noaux_tc", "greedy", "group_limited_greedy"});
  c.moe_layer_freq = f.opt_int("moe_layer_freq", 1);
  c.num_nextn_predict_layers = f.opt_int("num_nextn_predict_layers", 0);

  c.rope = parse_rope(j);
  c.quant = parse_quant(j);
  validate(c);
  check_mlp_layer_types(j, c);
  return c;
}

ModelConfig load_config(const std::string& model_dir) {
  std::string path = model_dir + "/config.json";
  std::ifstream in(path);
  if (!in) fail("cannot open {}", path);
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
  try {
    return parse_config(j);
  } catch (const Error& e) {
    fail("{}: {}", path, e.what());
  }
}

json to_json(const ModelConfig& c) {
  json j;
  j["architectures"] = {c.has_indexer() ? "DeepseekV32ForCausalLM" : "DeepseekV3ForCausalLM"};
  j["model_type"] = c.model_type;
  j["torch_dtype"] = c.torch_dtype;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["moe_intermediate_size"] = c.moe_intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_nextn_predict_layers"] = c.num_nextn_predict_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_attention_heads;  // unused by MLA; HF expects it
  j["q_lora_rank"] = c.q_lora_rank;
  j["kv_lora_rank"] = c.kv_lora_rank;
  j["qk_nope_head_dim"] = c.qk_nope_head_dim;
  j["qk_rope_head_dim"] = c.qk_rope_head_dim;
  j["v_head_dim"] = c.v_head_dim;
  j["n_routed_experts"] = c.n_routed_experts;
  j["n_shared_experts"] = c.n_shared_experts;
  j["num_experts_per_tok"] = c.num_experts_per_tok;
  j["n_group"] = c.n_group;
  j["topk_group"] = c.topk_group;
  j["topk_method"] = c.topk_method;
  j["first_k_dense_replace"] = c.first_k_dense_replace;
  j["moe_layer_freq"] = c.moe_layer_freq;
  j["routed_scaling_factor"] = c.routed_scaling_factor;
  j["norm_topk_prob"] = c.norm_topk_prob;
  j["scoring_func"] = c.scoring_func;
  j["hidden_act"] = c.hidden_act;
  j["rms_norm_eps"] = c.rms_norm_eps;
  if (c.has_indexer()) {
    j["index_n_heads"] = c.index_n_heads;
    j["index_head_dim"] = c.index_head_dim;
    j["index_topk"] = c.index_topk;
  }
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["bos_token_id"] = c.bos_token_id >= 0 ? json(c.bos_token_id) : json(nullptr);
  j["eos_token_id"] = c.eos_token_ids.empty()       ? json(nullptr)
                      : c.eos_token_ids.size() == 1 ? json(c.eos_token_ids[0])
                                                    : json(c.eos_token_ids);
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["attention_bias"] = false;
  j["rope_theta"] = c.rope.theta;
  if (c.rope.is_yarn()) {
    json s = {{"type", "yarn"},
              {"factor", c.rope.factor},
              {"original_max_position_embeddings", c.rope.original_max_position_embeddings},
              {"beta_fast", c.rope.beta_fast},
              {"beta_slow", c.rope.beta_slow}};
    if (c.rope.mscale != 0.0) s["mscale"] = c.rope.mscale;
    if (c.rope.mscale_all_dim != 0.0) s["mscale_all_dim"] = c.rope.mscale_all_dim;
    j["rope_scaling"] = s;
  } else {
    j["rope_scaling"] = nullptr;
  }
  if (c.quant.is_fp8()) {
    json q = {{"quant_method", c.quant.method},
              {"fmt", c.quant.fmt},
              {"activation_scheme", c.quant.activation_scheme},
              {"weight_block_size", c.quant.weight_block_size}};
    if (!c.quant.scale_fmt.empty()) q["scale_fmt"] = c.quant.scale_fmt;
    if (!c.quant.modules_to_not_convert.empty()) q["modules_to_not_convert"] = c.quant.modules_to_not_convert;
    j["quantization_config"] = q;
  }
  return j;
}

}  // namespace ds::model
