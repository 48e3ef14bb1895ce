#include "model/make_model.h"

#include <omp.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "model/safetensors_writer.h"
#include "model/weights.h"
#include "util/error.h"
#include "util/log.h"

namespace ds::model {

namespace {
nlohmann::json base_json(const std::string& preset) {
  nlohmann::json j = {{"architectures", {"DeepseekV32ForCausalLM"}}, {"model_type", "deepseek_v32"},
                      {"hidden_act", "silu"}, {"rms_norm_eps", 1e-6}, {"scoring_func", "sigmoid"},
                      {"topk_method", "noaux_tc"}, {"norm_topk_prob", true}, {"moe_layer_freq", 1},
                      {"bos_token_id", 0}, {"eos_token_id", 1}, {"tie_word_embeddings", false},
                      {"rope_theta", 10000.0}, {"num_key_value_heads", 1}, {"torch_dtype", "bfloat16"},
                      {"routed_scaling_factor", 2.5}, {"attention_bias", false}};
  auto yarn = [](double factor, int64_t orig) {
    return nlohmann::json{{"type", "yarn"}, {"factor", factor}, {"original_max_position_embeddings", orig},
                          {"beta_fast", 32}, {"beta_slow", 1}, {"mscale", 1.0}, {"mscale_all_dim", 1.0}};
  };
  if (preset == "tiny") {
    // Small enough for golden tests on 2 cores; every dimension below 128 gives partial FP8 blocks,
    // index_topk 16 makes 40-token sequences really sparse, 4 groups / 2 kept exercise group routing.
    // 16 indexer heads make exact-zero index scores (all heads' ReLU at 0, a tie whose order is
    // implementation-defined in torch.topk) rare enough not to trouble the golden comparison.
    j.update({{"vocab_size", 512}, {"hidden_size", 128}, {"intermediate_size", 160}, {"moe_intermediate_size", 48},
              {"num_hidden_layers", 3}, {"first_k_dense_replace", 1}, {"num_nextn_predict_layers", 1},
              {"num_attention_heads", 4}, {"q_lora_rank", 96}, {"kv_lora_rank", 64}, {"qk_nope_head_dim", 32},
              {"qk_rope_head_dim", 16}, {"v_head_dim", 32}, {"n_routed_experts", 8}, {"n_shared_experts", 1},
              {"num_experts_per_tok", 3}, {"n_group", 4}, {"topk_group", 2}, {"index_n_heads", 16},
              {"index_head_dim", 32}, {"index_topk", 16}, {"max_position_embeddings", 256},
              {"rope_scaling", yarn(4.0, 64)}});
  } else if (preset == "demo") {
    // The embedded demo: the real vocabulary, narrow layers, interactive on 2 CPU cores.
    j.update({{"vocab_size", 129280}, {"hidden_size", 256}, {"intermediate_size", 768},
              {"moe_intermediate_size", 256}, {"num_hidden_layers", 4}, {"first_k_dense_replace", 1},
              {"num_nextn_predict_layers", 1}, {"num_attention_heads", 4}, {"q_lora_rank", 256},
              {"kv_lora_rank", 256}, {"qk_nope_head_dim", 64}, {"qk_rope_head_dim", 64}, {"v_head_dim", 64},
              {"n_routed_experts", 16}, {"n_shared_experts", 1}, {"num_experts_per_tok", 4}, {"n_group", 4},
              {"topk_group", 2}, {"index_n_heads", 8}, {"index_head_dim", 128}, {"index_topk", 512},
              {"max_position_embeddings", 163840}, {"rope_scaling", yarn(40.0, 4096)}});
  } else if (preset == "full-width") {
    // DeepSeek-V3.2's real layer shapes (config.json of the 671B model), few layers.
    j.update({{"vocab_size", 129280}, {"hidden_size", 7168}, {"intermediate_size", 18432},
              {"moe_intermediate_size", 2048}, {"num_hidden_layers", 4}, {"first_k_dense_replace", 3},
              {"num_nextn_predict_layers", 1}, {"num_attention_heads", 128}, {"q_lora_rank", 1536},
              {"kv_lora_rank", 512}, {"qk_nope_head_dim", 128}, {"qk_rope_head_dim", 64}, {"v_head_dim", 128},
              {"n_routed_experts", 256}, {"n_shared_experts", 1}, {"num_experts_per_tok", 8}, {"n_group", 8},
              {"topk_group", 4}, {"index_n_heads", 64}, {"index_head_dim", 128}, {"index_topk", 2048},
              {"max_position_embeddings", 163840}, {"rope_scaling", yarn(40.0, 4096)}});
  } else {
    fail("unknown preset '{}' (tiny, demo, full-width)", preset);
  }
  return j;
}

// Counter-based random numbers: every element is a pure function of (seed, tensor, index), so tensors
// can be filled in any order and in parallel, and a tensor's values do not depend on the others.
inline uint64_t splitmix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
inline double uniform01(uint64_t key, uint64_t i) { return double(splitmix(key ^ splitmix(i)) >> 11) * 0x1.0p-53; }
inline float normal(uint64_t key, uint64_t i) {
  double u1 = uniform01(key, 2 * i) + 1e-300, u2 = uniform01(key, 2 * i + 1);
  return float(std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2));
}
uint64_t name_key(uint64_t seed, const std::string& name) {
  uint64_t h = splitmix(seed);
  for (unsigned char ch : name) h = splitmix(h ^ ch);
  return h;
}

// How a tensor's values are drawn.
struct Init {
  enum Kind { Normal, NearOne, Uniform } kind;
  float scale;
};
Init init_for(const WeightSpec& s) {
  if (s.kind == WeightKind::Vector) {
    if (s.name.ends_with("e_score_correction_bias")) return {Init::Uniform, 0.05f};
    if (s.name.ends_with(".bias")) return {Init::Normal, 0.1f};
    return {Init::NearOne, 0.2f};  // norm weights in [0.8, 1.2]
  }
  if (s.name == "model.embed_tokens.weight" || s.name.ends_with("embed_tokens.weight")) return {Init::Normal, 1.0f};
  return {Init::Normal, float(1.0 / std::sqrt(double(s.shape[1])))};  // unit-RMS outputs for unit-RMS inputs
}
float draw(const Init& in, uint64_t key, uint64_t i) {
  switch (in.kind) {
    case Init::Normal: return in.scale * normal(key, i);
    case Init::NearOne: return 1.0f + in.scale * float(2 * uniform01(key, i) - 1);
    case Init::Uniform: return in.scale * float(2 * uniform01(key, i) - 1);
  }
  return 0;
}
// FP8 block scale of block b: makes ~4 sigma of the block's distribution land at 448, times a
// per-block power-of-two jitter so blocks really differ.
float block_scale(const Init& in, uint64_t key, uint64_t b) {
  int jitter = int(splitmix(key ^ (b * 0x51ed27u)) % 3) - 1;
  return std::ldexp(4.0f * in.scale / 448.0f, jitter);
}

struct PlannedTensor {
  WeightSpec spec;
  Init init;
  uint64_t key;
  bool fp8;
  bool is_scale;  // the weight_scale_inv of an FP8 weight
  // Shaped weights (MakeModelOptions::bigram_mtp, layer_output_scale): the values times `gain` (an FP8
  // weight: its block scales; 0: zero values), or one of two fixed patterns.
  float gain = 1.0f;
  enum Pattern : uint8_t { Drawn, Ones, Identity } pattern = Drawn;  // Identity: [I 0] of a [H, 2H] matrix
};

bool is_output_projection(const std::string& name) {
  return name.ends_with("self_attn.o_proj.weight") || name.ends_with("down_proj.weight");
}

// The gain and pattern of a tensor of the checkpoint under o's shaping options.
void shape_weight(const MakeModelOptions& o, const ModelConfig& cfg, PlannedTensor& pt, std::string& seed_name) {
  const std::string& name = pt.spec.name;
  const std::string mtp0 = fmt::format("model.layers.{}.", cfg.num_hidden_layers);
  const bool in_mtp = name.rfind("model.layers.", 0) == 0 &&
                      std::stoll(name.substr(13, name.find('.', 13) - 13)) >= cfg.num_hidden_layers;
  if (is_output_projection(name))
    pt.gain = !in_mtp                                  ? o.layer_output_scale
              : !o.bigram_mtp                          ? 1.0f
              : name.ends_with("self_attn.o_proj.weight") ? o.mtp_attention_scale
                                                       : 0.0f;
  if (!o.bigram_mtp || !in_mtp) return;
  if (name.ends_with("enorm.weight")) pt.pattern = PlannedTensor::Ones;
  if (name.ends_with("eh_proj.weight")) pt.pattern = PlannedTensor::Identity;
  if (name.ends_with("shared_head.norm.weight")) seed_name = "model.norm.weight";
}
}  // namespace

nlohmann::json preset_json(const MakeModelOptions& o) {
  nlohmann::json j = base_json(o.preset);
  if (o.num_layers > 0) {
    j["num_hidden_layers"] = o.num_layers;
    j["first_k_dense_replace"] = std::min<int64_t>(j["first_k_dense_replace"].get<int64_t>(), o.num_layers - 1);
  }
  if (o.fp8)
    j["quantization_config"] = {{"quant_method", "fp8"}, {"fmt", "e4m3"}, {"activation_scheme", "dynamic"},
                                {"weight_block_size", {128, 128}}, {"scale_fmt", "ue8m0"}};
  if (!o.overrides.is_null()) {
    DS_CHECK(o.overrides.is_object(), "--override must be a JSON object");
    j.merge_patch(o.overrides);
  }
  if (j["model_type"] == "deepseek_v3" && !o.overrides.contains("architectures"))
    j["architectures"] = {"DeepseekV3ForCausalLM"};
  // transformers repeats K/V heads by num_attention_heads / num_key_value_heads; MLA has one per head.
  j["num_key_value_heads"] = j["num_attention_heads"];
  return j;
}

ModelConfig preset_config(const MakeModelOptions& o) { return parse_config(preset_json(o)); }

void make_model(const MakeModelOptions& o, const std::string& out_dir) {
  nlohmann::json cfg_json = preset_json(o);
  ModelConfig cfg = parse_config(cfg_json);
  std::filesystem::create_directories(out_dir);
  {
    std::ofstream f(out_dir + "/config.json");
    f << cfg_json.dump(2) << "\n";
    DS_CHECK(f.good(), "cannot write {}/config.json", out_dir);
  }
  if (o.config_only) {
    spdlog::info("wrote {}/config.json ({} layers; no weights: serve it with --load-format dummy)", out_dir,
                 cfg.num_hidden_layers);
    return;
  }
  std::vector<TensorSpec> plan;
  std::vector<PlannedTensor> info;
  for (const auto& s : weight_manifest(cfg, true)) {
    bool fp8 = cfg.quant.is_fp8() && s.kind == WeightKind::Linear && s.fp8_in_deepseek;
    // The MTP layer's copies of the embedding and head hold the same values as the originals.
    std::string seed_name = s.name;
    if (s.name.ends_with("shared_head.head.weight")) seed_name = "lm_head.weight";
    else if (s.name != "model.embed_tokens.weight" && s.name.ends_with("embed_tokens.weight"))
      seed_name = "model.embed_tokens.weight";
    PlannedTensor pt{s, init_for(s), 0, fp8, false};
    shape_weight(o, cfg, pt, seed_name);
    pt.key = name_key(o.seed, seed_name);
    DType dt = fp8 ? DType::F8_E4M3 : (s.name.ends_with("e_score_correction_bias") ? DType::F32 : DType::BF16);
    plan.push_back({s.name, dt, s.shape});
    info.push_back(pt);
    if (fp8) {
      WeightSpec ss{s.name.substr(0, s.name.size() - 7) + ".weight_scale_inv",
                    {(s.shape[0] + 127) / 128, (s.shape[1] + 127) / 128}, WeightKind::Dense, false};
      plan.push_back({ss.name, DType::F32, ss.shape});
      info.push_back({ss, pt.init, pt.key, false, true, pt.gain});
    }
  }
  std::unordered_map<std::string, size_t> by_name;
  for (size_t i = 0; i < plan.size(); ++i) by_name[plan[i].name] = i;

  auto fill = [&](const TensorSpec& ts, uint8_t* out, uint64_t) {
    const PlannedTensor& pt = info[by_name.at(ts.name)];
    const int64_t n = ts.nbytes() / int64_t(dtype_size(ts.dtype));
    if (pt.is_scale) {  // a zero gain zeroes the weight's values instead: scales stay positive
      auto* p = reinterpret_cast<float*>(out);
      const float g = pt.gain == 0.0f ? 1.0f : pt.gain;
      for (int64_t b = 0; b < n; ++b) p[b] = g * block_scale(pt.init, pt.key, uint64_t(b));
      return;
    }
    if (pt.pattern == PlannedTensor::Drawn && pt.gain == 0.0f) {  // zero in every dtype here
      std::memset(out, 0, size_t(ts.nbytes()));
      return;
    }
    if (pt.pattern != PlannedTensor::Drawn) {  // norms and eh_proj: small, element by element
      const int64_t cols = ts.shape.size() == 2 ? ts.shape[1] : 1;
      auto value = [&](int64_t i) {
        if (pt.pattern == PlannedTensor::Ones) return 1.0f;
        if (pt.pattern == PlannedTensor::Identity) return i / cols == i % cols ? 1.0f : 0.0f;
        return 0.0f;  // gain 0
      };
      for (int64_t i = 0; i < n; ++i) {
        if (ts.dtype == DType::F8_E4M3) out[i] = f32_to_fp8e4m3(value(i));
        else if (ts.dtype == DType::F32) reinterpret_cast<float*>(out)[i] = value(i);
        else reinterpret_cast<uint16_t*>(out)[i] = f32_to_bf16(value(i));
      }
      return;
    }
    if (pt.fp8) {
      // Row by row with the block scales computed once (the same values as per element: the output does
      // not change), which saves a 64-bit division and a hash per element.
      const int64_t rows = ts.shape[0], cols = ts.shape[1], scols = (cols + 127) / 128;
      std::vector<float> scales(size_t((rows + 127) / 128 * scols));
      for (size_t b = 0; b < scales.size(); ++b) scales[b] = block_scale(pt.init, pt.key, uint64_t(b));
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        const float* s = scales.data() + (r / 128) * scols;
        uint8_t* o = out + r * cols;
        for (int64_t c = 0; c < cols; ++c) o[c] = f32_to_fp8e4m3(draw(pt.init, pt.key, uint64_t(r * cols + c)) / s[c / 128]);
      }
      return;
    }
    if (ts.dtype == DType::F32) {
      auto* p = reinterpret_cast<float*>(out);
      for (int64_t i = 0; i < n; ++i) p[i] = draw(pt.init, pt.key, uint64_t(i));
      return;
    }
    auto* p = reinterpret_cast<uint16_t*>(out);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) p[i] = f32_to_bf16(pt.gain * draw(pt.init, pt.key, uint64_t(i)));
  };
  write_sharded_checkpoint(out_dir, plan, fill, uint64_t(2) << 30, true);
  spdlog::info("wrote {} ({} tensors, preset {}, {} layers{})", out_dir, plan.size(), o.preset,
               cfg.num_hidden_layers, cfg.num_nextn_predict_layers ? " + MTP" : "");
}

}  // namespace ds::model
