// Random-weight checkpoints in DeepSeek's HF format (config.json + sharded safetensors + index, FP8
// e4m3 weights with 128x128 block scales, MTP layer included) for tests, the demo and benchmarks.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "model/config.h"

namespace ds::model {

struct MakeModelOptions {
  std::string preset = "tiny";  // tiny | demo | full-width
  int64_t num_layers = 0;       // 0: the preset's own
  uint64_t seed = 0;
  bool fp8 = true;              // FP8 block-quantised linears (as DeepSeek ships); false: all BF16
  nlohmann::json overrides;     // config.json fields to override (an object), applied last
  // A draft that agrees with the model by construction (speculative decoding tests): the MTP layer
  // predicts from the next token alone what the main model would predict from it — its attention and FFN
  // outputs zero, eh_proj = [I 0] (the embedding half), enorm 1, shared_head.norm = the final norm and
  // the same embedding and head. Exact for a bigram model, i.e. with layer_output_scale 0.
  bool bigram_mtp = false;
  // With bigram_mtp: the MTP layer's attention output projection times this instead of 0, so that its
  // drafts also depend on its attention over its own KV cache (and agree less): tests that the MTP layer's
  // KV is right (e.g. after it travelled from a prefill server) need drafts that read it.
  float mtp_attention_scale = 0.0f;
  // Every main layer's attention and FFN output projections (o_proj, down_proj) times this: 0 makes the
  // main model a bigram model (the next token a function of the current one), larger values make its
  // context matter more and a bigram draft agree less.
  float layer_output_scale = 1.0f;
  // config.json alone, no weights: for serve --load-format dummy (random weights made in memory).
  bool config_only = false;
};

// The config.json make_model writes (HF field names), and its parsed form.
nlohmann::json preset_json(const MakeModelOptions& o);
ModelConfig preset_config(const MakeModelOptions& o);
// Writes the checkpoint to out_dir (created), with a progress bar. Deterministic in (config, seed).
void make_model(const MakeModelOptions& o, const std::string& out_dir);

}  // namespace ds::model
