#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "model/config.h"
#include "util/error.h"

using nlohmann::json;
using namespace ds::model;

namespace {

const std::string kFixtureDir = std::string(DS_SOURCE_DIR) + "/tests/fixtures/config";

json real_json() {
  std::ifstream in(kFixtureDir + "/deepseek_v32_config.json");
  return json::parse(in);
}

// A small valid v3.2 config (what a tiny random model would use).
json tiny_json() {
  return json{{"model_type", "deepseek_v32"}, {"vocab_size", 1000}, {"hidden_size", 256},
              {"intermediate_size", 512}, {"moe_intermediate_size", 128}, {"num_hidden_layers", 4},
              {"num_nextn_predict_layers", 1}, {"num_attention_heads", 4}, {"q_lora_rank", 128},
              {"kv_lora_rank", 128}, {"qk_nope_head_dim", 32}, {"qk_rope_head_dim", 16},
              {"v_head_dim", 32}, {"n_routed_experts", 16}, {"n_shared_experts", 1},
              {"num_experts_per_tok", 4}, {"n_group", 4}, {"topk_group", 2},
              {"first_k_dense_replace", 1}, {"index_n_heads", 4}, {"index_head_dim", 32},
              {"index_topk", 64}, {"max_position_embeddings", 4096}};
}

// The message of the ds::Error that parse_config throws (fails the test if none).
std::string error_of(const json& j) {
  try {
    parse_config(j);
  } catch (const ds::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error for " << j.dump();
  return "";
}

#define EXPECT_ERROR_MENTIONS(j, ...)                                          \
  do {                                                                         \
    std::string msg_ = error_of(j);                                            \
    for (const char* part : {__VA_ARGS__})                                     \
      EXPECT_NE(msg_.find(part), std::string::npos) << "message: " << msg_ << " lacks " << part; \
  } while (0)

}  // namespace

TEST(Config, RealDeepSeekV32) {
  ModelConfig c = parse_config(real_json());
  EXPECT_EQ(c.model_type, "deepseek_v32");
  EXPECT_TRUE(c.has_indexer());
  EXPECT_EQ(c.vocab_size, 129280);
  EXPECT_EQ(c.hidden_size, 7168);
  EXPECT_EQ(c.intermediate_size, 18432);
  EXPECT_EQ(c.moe_intermediate_size, 2048);
  EXPECT_EQ(c.num_hidden_layers, 61);
  EXPECT_EQ(c.num_nextn_predict_layers, 1);
  EXPECT_EQ(c.num_attention_heads, 128);
  EXPECT_EQ(c.q_lora_rank, 1536);
  EXPECT_EQ(c.kv_lora_rank, 512);
  EXPECT_EQ(c.qk_nope_head_dim, 128);
  EXPECT_EQ(c.qk_rope_head_dim, 64);
  EXPECT_EQ(c.v_head_dim, 128);
  EXPECT_EQ(c.qk_head_dim(), 192);
  EXPECT_EQ(c.n_routed_experts, 256);
  EXPECT_EQ(c.n_shared_experts, 1);
  EXPECT_EQ(c.num_experts_per_tok, 8);
  EXPECT_EQ(c.n_group, 8);
  EXPECT_EQ(c.topk_group, 4);
  EXPECT_EQ(c.topk_method, "noaux_tc");
  EXPECT_EQ(c.first_k_dense_replace, 3);
  EXPECT_EQ(c.moe_layer_freq, 1);
  EXPECT_DOUBLE_EQ(c.routed_scaling_factor, 2.5);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.scoring_func, "sigmoid");
  EXPECT_EQ(c.hidden_act, "silu");
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.index_n_heads, 64);
  EXPECT_EQ(c.index_head_dim, 128);
  EXPECT_EQ(c.index_topk, 2048);
  EXPECT_EQ(c.max_position_embeddings, 163840);
  EXPECT_EQ(c.bos_token_id, 0);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{1});
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.torch_dtype, "bfloat16");

  EXPECT_DOUBLE_EQ(c.rope.theta, 10000.0);
  EXPECT_TRUE(c.rope.is_yarn());
  EXPECT_DOUBLE_EQ(c.rope.factor, 40.0);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(c.rope.beta_fast, 32.0);
  EXPECT_DOUBLE_EQ(c.rope.beta_slow, 1.0);
  EXPECT_DOUBLE_EQ(c.rope.mscale, 1.0);
  EXPECT_DOUBLE_EQ(c.rope.mscale_all_dim, 1.0);

  EXPECT_TRUE(c.quant.is_fp8());
  EXPECT_EQ(c.quant.fmt, "e4m3");
  EXPECT_EQ(c.quant.activation_scheme, "dynamic");
  EXPECT_EQ(c.quant.weight_block_size, (std::vector<int64_t>{128, 128}));
  EXPECT_EQ(c.quant.scale_fmt, "ue8m0");

  EXPECT_NEAR(c.yarn_mscale(), 1.368887945, 1e-9);
  EXPECT_NEAR(c.softmax_scale(), 0.135233779, 1e-6);
  EXPECT_NEAR(c.rope_attention_factor(), 1.0, 1e-12);

  for (int l = 0; l < 3; ++l) EXPECT_FALSE(c.is_moe_layer(l)) << l;
  for (int l = 3; l <= 61; ++l) EXPECT_TRUE(c.is_moe_layer(l)) << l;
}

TEST(Config, DeepSeekV3Variant) {
  json j = real_json();
  j["model_type"] = "deepseek_v3";
  j["architectures"] = {"DeepseekV3ForCausalLM"};
  j.erase("index_n_heads");
  j.erase("index_head_dim");
  j.erase("index_topk");
  ModelConfig c = parse_config(j);
  EXPECT_EQ(c.model_type, "deepseek_v3");
  EXPECT_FALSE(c.has_indexer());
  EXPECT_EQ(c.index_topk, 0);
  EXPECT_NEAR(c.softmax_scale(), 0.135233779, 1e-6);
  json out = to_json(c);
  EXPECT_EQ(out["architectures"][0], "DeepseekV3ForCausalLM");
  EXPECT_FALSE(out.contains("index_topk"));
  EXPECT_EQ(parse_config(out), c);
}

TEST(Config, Transformers5RopeParameters) {
  json j = real_json();
  j.erase("rope_theta");
  j.erase("rope_scaling");
  j.erase("torch_dtype");
  j["dtype"] = "bfloat16";
  j["rope_parameters"] = {{"rope_theta", 10000.0}, {"rope_type", "yarn"}, {"factor", 40.0},
                          {"original_max_position_embeddings", 4096}, {"beta_fast", 32.0},
                          {"beta_slow", 1.0}, {"mscale", 1.0}, {"mscale_all_dim", 1.0}};
  j["mlp_layer_types"] = json::array();
  for (int l = 0; l < 61; ++l) j["mlp_layer_types"].push_back(l < 3 ? "dense" : "sparse");
  // transformers' FP8 config has no fmt / scale_fmt and lists unconverted modules.
  j["quantization_config"] = {{"quant_method", "fp8"}, {"activation_scheme", "dynamic"},
                              {"weight_block_size", {128, 128}}, {"modules_to_not_convert", {"lm_head"}},
                              {"dequantize", false}};
  ModelConfig c = parse_config(j);
  ModelConfig real = parse_config(real_json());
  EXPECT_EQ(c.rope, real.rope);
  EXPECT_NEAR(c.softmax_scale(), 0.135233779, 1e-6);
  EXPECT_TRUE(c.quant.is_fp8());
  EXPECT_EQ(c.quant.fmt, "e4m3");
  EXPECT_EQ(c.quant.scale_fmt, "");
  EXPECT_FALSE(c.quant.ue8m0_scales());
  EXPECT_EQ(c.quant.modules_to_not_convert, std::vector<std::string>{"lm_head"});
  EXPECT_EQ(parse_config(to_json(c)), c);
  j["quantization_config"]["scale_fmt"] = "float";
  EXPECT_EQ(parse_config(j).quant.scale_fmt, "float");
  EXPECT_EQ(parse_config(to_json(parse_config(j))), parse_config(j));
  j["quantization_config"]["weight_block_size"] = nullptr;
  EXPECT_ERROR_MENTIONS(j, "quantization_config.weight_block_size", "null");
  j["quantization_config"].erase("weight_block_size");
  EXPECT_EQ(parse_config(j).quant.weight_block_size, (std::vector<int64_t>{128, 128}));

  // Both spellings of the rope type, consistent, and the theta defaulting to the top level one.
  j["rope_parameters"]["type"] = "yarn";
  j["rope_parameters"].erase("rope_theta");
  j["rope_theta"] = 50000;
  EXPECT_DOUBLE_EQ(parse_config(j).rope.theta, 50000.0);
  j["rope_parameters"]["type"] = "default";
  EXPECT_ERROR_MENTIONS(j, "rope_parameters.type", "rope_parameters.rope_type");
}

TEST(Config, Bf16WithoutQuantizationNoYarn) {
  json j = tiny_json();
  ModelConfig c = parse_config(j);
  EXPECT_FALSE(c.quant.is_fp8());
  EXPECT_EQ(c.quant.method, "");
  EXPECT_FALSE(c.rope.is_yarn());
  EXPECT_DOUBLE_EQ(c.rope.theta, 10000.0);
  EXPECT_DOUBLE_EQ(c.yarn_mscale(), 1.0);
  EXPECT_NEAR(c.softmax_scale(), 1.0 / std::sqrt(48.0), 1e-12);
  // HF defaults filled in
  EXPECT_EQ(c.scoring_func, "sigmoid");
  EXPECT_EQ(c.topk_method, "noaux_tc");
  EXPECT_EQ(c.hidden_act, "silu");
  EXPECT_EQ(c.bos_token_id, 0);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{1});
  EXPECT_DOUBLE_EQ(c.routed_scaling_factor, 2.5);
  EXPECT_FALSE(c.is_moe_layer(0));
  EXPECT_TRUE(c.is_moe_layer(1));
  EXPECT_TRUE(c.is_moe_layer(4));  // the MTP layer
  EXPECT_EQ(parse_config(to_json(c)), c);

  // The real model converted to BF16: same config without quantization_config.
  json bf16 = real_json();
  bf16.erase("quantization_config");
  ModelConfig cb = parse_config(bf16);
  EXPECT_FALSE(cb.quant.is_fp8());
  EXPECT_NEAR(cb.softmax_scale(), 0.135233779, 1e-6);
  EXPECT_FALSE(to_json(cb).contains("quantization_config"));
  EXPECT_EQ(parse_config(to_json(cb)), cb);

  j["rope_scaling"] = {{"rope_type", "default"}};
  EXPECT_FALSE(parse_config(j).rope.is_yarn());
  j["rope_scaling"] = nullptr;
  EXPECT_FALSE(parse_config(j).rope.is_yarn());
}

TEST(Config, RoundTripRealConfig) {
  ModelConfig c = parse_config(real_json());
  json out = to_json(c);
  EXPECT_EQ(parse_config(out), c);
  EXPECT_EQ(out["rope_scaling"]["type"], "yarn");
  EXPECT_EQ(out["quantization_config"]["scale_fmt"], "ue8m0");
  EXPECT_EQ(out["num_key_value_heads"], 128);
}

TEST(Config, EosListAndMoeLayerFreq) {
  json j = tiny_json();
  j["eos_token_id"] = {1, 2, 7};
  j["moe_layer_freq"] = 2;
  j["bos_token_id"] = nullptr;
  ModelConfig c = parse_config(j);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{1, 2, 7}));
  EXPECT_EQ(c.bos_token_id, -1);
  EXPECT_FALSE(c.is_moe_layer(0));
  EXPECT_FALSE(c.is_moe_layer(1));
  EXPECT_TRUE(c.is_moe_layer(2));
  EXPECT_FALSE(c.is_moe_layer(3));
  EXPECT_TRUE(c.is_moe_layer(4));  // MTP
  EXPECT_EQ(parse_config(to_json(c)), c);
}

TEST(Config, YarnScaleFollowsMscaleAllDim) {
  json j = tiny_json();
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 4}, {"original_max_position_embeddings", 1024},
                       {"mscale", 0.707}, {"mscale_all_dim", 0.5}};
  ModelConfig c = parse_config(j);
  double m = 0.1 * 0.5 * std::log(4.0) + 1.0;
  EXPECT_NEAR(c.yarn_mscale(), m, 1e-12);
  EXPECT_NEAR(c.softmax_scale(), m * m / std::sqrt(48.0), 1e-12);
  EXPECT_NEAR(c.rope_attention_factor(), (0.1 * 0.707 * std::log(4.0) + 1) / m, 1e-12);
  // Without mscale_all_dim, transformers leaves the softmax scale alone.
  j["rope_scaling"].erase("mscale_all_dim");
  c = parse_config(j);
  EXPECT_DOUBLE_EQ(c.yarn_mscale(), 1.0);
  EXPECT_NEAR(c.rope_attention_factor(), 0.1 * std::log(4.0) + 1, 1e-12);
  EXPECT_EQ(parse_config(to_json(c)), c);
}

TEST(Config, LoadConfigReadsDirectory) {
  auto dir = std::filesystem::temp_directory_path() / ("ds_test_config_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(kFixtureDir + "/deepseek_v32_config.json", dir / "config.json",
                             std::filesystem::copy_options::overwrite_existing);
  ModelConfig c = load_config(dir.string());
  EXPECT_EQ(c, parse_config(real_json()));
  {
    std::ofstream bad(dir / "config.json");
    bad << "{ not json";
  }
  try {
    load_config(dir.string());
    ADD_FAILURE() << "no error";
  } catch (const ds::Error& e) {
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
  EXPECT_THROW(load_config(dir.string()), ds::Error);
}

// ---- validation: every error names the field (and the bad value where there is one) ----

TEST(ConfigErrors, MissingRequiredFields) {
  for (const char* f : {"model_type", "vocab_size", "hidden_size", "intermediate_size", "moe_intermediate_size",
                        "num_hidden_layers", "num_attention_heads", "q_lora_rank", "kv_lora_rank",
                        "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "n_routed_experts",
                        "n_shared_experts", "num_experts_per_tok", "index_n_heads", "index_head_dim"}) {
    json j = real_json();
    j.erase(f);
    EXPECT_ERROR_MENTIONS(j, "missing", f);
  }
  json j = real_json();
  j["rope_scaling"].erase("factor");
  EXPECT_ERROR_MENTIONS(j, "rope_scaling.factor");
  j = real_json();
  j["rope_scaling"].erase("original_max_position_embeddings");
  EXPECT_ERROR_MENTIONS(j, "rope_scaling.original_max_position_embeddings");
  j = real_json();
  j["quantization_config"].erase("quant_method");
  EXPECT_ERROR_MENTIONS(j, "quantization_config.quant_method");
}

TEST(ConfigErrors, WrongTypes) {
  struct Case { const char* field; json value; const char* shown; };
  for (const Case& k : std::vector<Case>{{"hidden_size", "7168", "\"7168\""},
                                         {"hidden_size", 7168.5, "7168.5"},
                                         {"num_hidden_layers", true, "true"},
                                         {"norm_topk_prob", 1, "1"},
                                         {"rms_norm_eps", "small", "\"small\""},
                                         {"scoring_func", 3, "3"},
                                         {"eos_token_id", "1", "\"1\""},
                                         {"eos_token_id", json::array({1, "x"}), "[1,\"x\"]"},
                                         {"vocab_size", json::object(), "{}"},
                                         {"rope_scaling", "yarn", "\"yarn\""},
                                         {"quantization_config", 8, "8"},
                                         {"num_experts_per_tok", 18446744073709551615ull, "18446744073709551615"}}) {
    json j = real_json();
    j[k.field] = k.value;
    EXPECT_ERROR_MENTIONS(j, k.field, k.shown);
  }
  EXPECT_ERROR_MENTIONS(json::array(), "object");
}

TEST(ConfigErrors, UnknownEnumValues) {
  struct Case { const char* field; const char* value; };
  for (const Case& k : std::vector<Case>{{"model_type", "llama"},
                                         {"scoring_func", "tanh"},
                                         {"hidden_act", "gelu"},
                                         {"topk_method", "random"}}) {
    json j = real_json();
    j[k.field] = k.value;
    EXPECT_ERROR_MENTIONS(j, k.field, k.value);
  }
  json j = real_json();
  j["quantization_config"]["quant_method"] = "gptq";
  EXPECT_ERROR_MENTIONS(j, "quantization_config.quant_method", "gptq");
  j = real_json();
  j["quantization_config"]["fmt"] = "e5m2";
  EXPECT_ERROR_MENTIONS(j, "quantization_config.fmt", "e5m2");
  j = real_json();
  j["quantization_config"]["activation_scheme"] = "static";
  EXPECT_ERROR_MENTIONS(j, "quantization_config.activation_scheme", "static");
  j = real_json();
  j["quantization_config"]["scale_fmt"] = "e8m0x";
  EXPECT_ERROR_MENTIONS(j, "quantization_config.scale_fmt", "e8m0x");
  j = real_json();
  j["quantization_config"]["weight_block_size"] = {64, 64};
  EXPECT_ERROR_MENTIONS(j, "quantization_config.weight_block_size", "[64,64]");
  j = real_json();
  j["rope_scaling"]["type"] = "linear";
  EXPECT_ERROR_MENTIONS(j, "rope_scaling.type", "linear");
}

TEST(ConfigErrors, NonPositiveDims) {
  for (const char* f : {"vocab_size", "hidden_size", "intermediate_size", "moe_intermediate_size",
                        "num_hidden_layers", "num_attention_heads", "q_lora_rank", "kv_lora_rank",
                        "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "n_routed_experts",
                        "num_experts_per_tok", "n_group", "topk_group", "index_n_heads", "index_head_dim",
                        "index_topk", "max_position_embeddings", "moe_layer_freq"}) {
    json j = real_json();
    j[f] = 0;
    EXPECT_ERROR_MENTIONS(j, f, "0");
    j[f] = -3;
    EXPECT_ERROR_MENTIONS(j, f, "-3");
  }
  for (const char* f : {"n_shared_experts", "first_k_dense_replace", "num_nextn_predict_layers"}) {
    json j = real_json();
    j[f] = -1;
    EXPECT_ERROR_MENTIONS(j, f, "-1");
  }
  for (const char* f : {"rms_norm_eps", "routed_scaling_factor", "rope_theta"}) {
    json j = real_json();
    j[f] = 0.0;
    EXPECT_ERROR_MENTIONS(j, f);
  }
}

TEST(ConfigErrors, Inconsistencies) {
  json j = real_json();
  j["n_group"] = 7;
  EXPECT_ERROR_MENTIONS(j, "n_routed_experts", "256", "n_group", "7");
  j = real_json();
  j["topk_group"] = 9;
  EXPECT_ERROR_MENTIONS(j, "topk_group", "9", "n_group");
  j = real_json();
  j["topk_group"] = 1;
  j["num_experts_per_tok"] = 33;
  EXPECT_ERROR_MENTIONS(j, "num_experts_per_tok", "33", "32");
  j = real_json();
  j["qk_rope_head_dim"] = 63;
  EXPECT_ERROR_MENTIONS(j, "qk_rope_head_dim", "63");
  j = real_json();
  j["index_head_dim"] = 32;
  EXPECT_ERROR_MENTIONS(j, "index_head_dim", "32");
  j = real_json();
  j["eos_token_id"] = 129280;
  EXPECT_ERROR_MENTIONS(j, "eos_token_id", "129280");
  j = real_json();
  j["bos_token_id"] = -5;
  EXPECT_ERROR_MENTIONS(j, "bos_token_id", "-5");
  j = real_json();
  j["rope_scaling"]["factor"] = 0.5;
  EXPECT_ERROR_MENTIONS(j, "rope_scaling.factor", "0.5");
  j = real_json();
  j["mlp_layer_types"] = {"dense"};
  EXPECT_ERROR_MENTIONS(j, "mlp_layer_types", "61");
  // FP8 widths that are not multiples of 128 are valid: DeepSeek's format has partial edge blocks.
  for (const char* f : {"hidden_size", "q_lora_rank", "kv_lora_rank", "intermediate_size", "moe_intermediate_size"}) {
    j = real_json();
    j[f] = 1000;
    EXPECT_EQ(parse_config(j).quant.is_fp8(), true) << f;
  }
}
