// The tensors of a DeepSeek-V3.2 checkpoint: what must be there (the manifest, shared with make-model)
// and the loaded weights in the backend's format.
#pragma once
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/config.h"
#include "model/tensor_parallel.h"

namespace ds::model {

class Checkpoint;

enum class WeightKind {
  Linear,      // 2-D [out, in]; FP8 (with weight_scale_inv) or BF16/F16/F32
  Dense,       // 2-D table kept in float (embedding, router, head)
  Vector,      // 1-D (norm weights, biases)
};

struct WeightSpec {
  std::string name;
  std::vector<int64_t> shape;
  WeightKind kind;
  bool fp8_in_deepseek;  // DeepSeek ships this one as FP8 e4m3 when the config is fp8
};

// Every tensor the forward reads (main model, then the MTP layers when include_mtp).
std::vector<WeightSpec> weight_manifest(const ModelConfig& c, bool include_mtp);

struct AttentionWeights {
  backend::LinearWeight q_a, q_b, kv_a, kv_b, o;
  Tensor q_a_norm, kv_a_norm;
  // lightning indexer (deepseek_v32)
  backend::LinearWeight idx_wq_b, idx_wk, idx_weights_proj;
  Tensor idx_k_norm_w, idx_k_norm_b;
};

struct FfnWeights {
  bool moe = false;
  backend::ExpertWeights dense;   // dense MLP (moe == false) or the shared experts (moe == true)
  backend::LinearWeight router;   // [E, H], fp32
  Tensor router_bias;             // e_score_correction_bias [E]
  std::shared_ptr<const backend::ExpertSet> experts;  // routed experts, prepared by the backend at load
  int64_t expert_begin = 0;  // global id of experts' first (expert parallel: this rank's range)
};

struct LayerWeights {
  Tensor input_norm, post_attn_norm;
  AttentionWeights attn;
  FfnWeights ffn;
};

struct MtpWeights {
  Tensor enorm, hnorm, head_norm;
  backend::LinearWeight eh_proj, head;
  // With an FP8 draft head (ModelOptions::draft_head): the checkpoint's head, whose rows rescore the copy's
  // top candidates of each draft (model/draft_head.h); undefined otherwise.
  backend::LinearWeight head_rescore;
  Tensor embed;  // layers.N.embed_tokens when the checkpoint has it, else the main embedding
  LayerWeights layer;
};

struct ModelWeights {
  Tensor embed;
  std::vector<LayerWeights> layers;
  Tensor final_norm;
  backend::LinearWeight lm_head;
  std::vector<MtpWeights> mtp;  // empty when the checkpoint has no MTP tensors
};

// Where the weights come from, tensor by tensor, by checkpoint name (a checkpoint; generated data),
// each cut to the part this rank keeps (model/weight_slice.h) before the backend converts it.
class WeightSource {
 public:
  virtual ~WeightSource() = default;
  // FP8 with its scales, or float.
  virtual backend::LinearWeight linear(const std::string& name, const Shard& part = {}) = 0;
  virtual Tensor f32(const std::string& name, const Shard& part = {}) = 0;  // norms, biases, the embedding
  // A tensor this rank does not keep (another rank's experts): only progress moves.
  virtual void skip(const std::string& name) {}
  virtual backend::Backend& backend() = 0;  // where the weights go
};

// The model's weights from `src`, main layers then (when with_mtp) the MTP layers, which share the
// main embedding and head; cut for rank tp.rank of tp.size (model/tensor_parallel.h).
ModelWeights assemble_weights(const ModelConfig& c, bool with_mtp, WeightSource& src, const TensorParallel& tp = {});

// Checks presence, shape and dtype of every tensor before anything is converted, then loads them
// through the backend with a progress bar. MTP is loaded when the checkpoint has it (transformers-
// written checkpoints drop layer num_hidden_layers); a half-present MTP layer is an error.
// With tp.size > 1 each rank reads only its slices (several ranks may load from one Checkpoint at
// once, on their own threads); only rank 0 draws the progress bar.
ModelWeights load_weights(const ModelConfig& c, const Checkpoint& ckpt, backend::Backend& be,
                          const TensorParallel& tp = {});

}  // namespace ds::model
