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
};

// The config.json make_model writes (HF field names), and its parsed form.
nlohmann::json preset_json(const MakeModelOptions& o);
ModelConfig preset_config(const MakeModelOptions& o);
// Writes the checkpoint to out_dir (created), with a progress bar. Deterministic in (config, seed).
void make_model(const MakeModelOptions& o, const std::string& out_dir);

}  // namespace ds::model
