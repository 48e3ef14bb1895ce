#include "model/weight_bytes.h"

#include <string_view>
#include <unordered_map>

#include "backend/backend.h"
#include "model/weights.h"
#include "util/error.h"

namespace ds::model {

namespace {

// A WeightSource that returns shapes without data and adds up their device bytes by part of the model.
class CountingSource final : public WeightSource {
 public:
  CountingSource(const ModelConfig& c, bool with_mtp, WeightBytes& out)
      : c_(c), out_(out), be_(backend::make_cpu_backend(1)) {
    for (auto& s : weight_manifest(c, with_mtp)) specs_.emplace(s.name, s);
  }

  backend::LinearWeight linear(const std::string& name, const Shard& part) override {
    const WeightSpec& s = spec(name);
    const int64_t n = part.axis == Shard::Axis::Rows ? part.end - part.begin : s.shape[0];
    const int64_t k = part.axis == Shard::Axis::Cols ? part.end - part.begin : s.shape[1];
    int64_t bytes = n * k * 2;
    if (c_.quant.is_fp8() && s.fp8_in_deepseek) {
      const int64_t nb = (n + 127) / 128, kb = (k + 127) / 128;
      bytes = n * k + nb * backend::fp8_scale_pitch(kb) * 4;
    }
    bucket(name) += bytes;
    backend::LinearWeight w;
    w.out_features = n, w.in_features = k;
    return w;
  }
  Tensor f32(const std::string& name, const Shard& part) override {
    const WeightSpec& s = spec(name);
    if (s.shape.size() == 2)  // the embedding: BF16 rows
      bucket(name) += (part.axis == Shard::Axis::Rows ? part.end - part.begin : s.shape[0]) * s.shape[1] * 2;
    else
      bucket(name) += (part.axis == Shard::Axis::Rows ? part.end - part.begin : s.shape[0]) * 4;
    return {};
  }
  backend::Backend& backend() override { return *be_; }  // prepare_experts: the default, no data touched

 private:
  const WeightSpec& spec(const std::string& name) const {
    auto it = specs_.find(name);
    DS_CHECK(it != specs_.end(), "weight bytes: '{}' is not in the manifest", name);
    return it->second;
  }
  int64_t& bucket(const std::string& name) {
    constexpr std::string_view kLayers = "model.layers.";
    if (name.rfind(kLayers, 0) == 0 && std::stoll(name.substr(kLayers.size())) >= c_.num_hidden_layers) return out_.mtp;
    if (name.find("embed_tokens") != std::string::npos || name == "lm_head.weight") return out_.embed_head;
    if (name.find(".mlp.experts.") != std::string::npos) return out_.routed_experts;
    if (name.find(".mlp.shared_experts.") != std::string::npos) return out_.shared_experts;
    if (name.find(".mlp.gate.") != std::string::npos) return out_.router;
    if (name.find(".mlp.") != std::string::npos) return out_.dense_mlp;
    if (name.find(".self_attn.") != std::string::npos) return out_.attention;
    return out_.norms;
  }
  const ModelConfig& c_;
  WeightBytes& out_;
  std::unique_ptr<backend::Backend> be_;
  std::unordered_map<std::string, WeightSpec> specs_;
};

}  // namespace

WeightBytes rank_weight_bytes(const ModelConfig& c, const TensorParallel& tp, bool with_mtp) {
  WeightBytes b;
  CountingSource src(c, with_mtp, b);
  assemble_weights(c, with_mtp, src, tp);
  return b;
}

}  // namespace ds::model
