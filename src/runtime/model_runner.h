// The runner: everything of one model on one device that a step needs — the Model (its weights on the
// backend), its KV pools, the recorded steps (step_recorder.h) and the drawing of next tokens
// (step_sampling.h). The engine plans a step (which sequences, which tokens, which forward mode) and
// hands it to its runners; it never touches Model, Backend or logits itself.
//
// One runner per device. With tensor parallelism every rank's runner runs the same step in lock step
// (the collectives are inside the backend's ops; runtime/lock_step.h runs them) and the ranks draw the
// same tokens; the engine reads the first rank's of each DP group.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/model.h"
#include "runtime/forward_mode.h"
#include "runtime/parallel_config.h"
#include "runtime/step_recorder.h"
#include "runtime/step_sampling.h"

namespace ds::runtime {

struct RunnerConfig {
  ParallelConfig parallel;
  int32_t num_pages = 0;                // KV pool size in pages; required
  int32_t page_size = 64;
  std::optional<DType> kv_cache_dtype;  // the latent pools; empty: the backend's activation dtype
  int32_t cuda_graph_max_bs = 0;        // steps of up to this many sequences are recorded; 0: op by op
  bool cuda_graph_lazy = false;         // record each shape at its first step instead of at start-up
  // Draw tokens on the model's device when its backend can (Backend::sample): a step then brings back
  // token ids instead of [rows, vocab] logits. false: always the host sampler.
  bool sample_on_device = true;
};

// One step as the engine plans it: the batch, its mode, and how to draw each sequence's next token.
// (batch.logits_on_device is the runner's choice: it follows where the tokens are drawn.)
struct StepInput {
  ForwardMode mode = ForwardMode::Extend;
  model::ForwardBatch batch;
  std::vector<SampleSlot> sample;  // one per sequence of the batch
  // Runs after the forward is queued and before sampling (the grammar masks of this step: computed
  // on the host while the device runs the forward); may be empty.
  std::function<void()> before_sampling;
};

struct StepOutput {
  DrawnTokens tokens;     // per sequence
  double forward_ms = 0;  // of the step's wall time, the forward (with device sampling: until its last
                          // kernels are queued; the device's tail counts as sampling)
};

class ModelRunner {
 public:
  // Borrows `model` (it must outlive the runner); makes the KV pools on its backend.
  ModelRunner(const RunnerConfig& cfg, const model::Model& model);
  // Borrows `model` and runs on pools made elsewhere (benchmarks: views of pools filled with random rows,
  // shared by runners of models cut to fewer layers); cfg's pool size and page size must be theirs.
  ModelRunner(const RunnerConfig& cfg, const model::Model& model, model::KVCache pools);
  // Owns the model and the backend it lives on.
  ModelRunner(const RunnerConfig& cfg, std::unique_ptr<backend::Backend> be, std::unique_ptr<model::Model> model);
  ~ModelRunner();

  // Runs the step: forward (replayed where recorded), then the draws of the sequences that ask for one
  // (on tensor-parallel rank 0 only: the other ranks return no tokens). Throws when the forward fails
  // (every sequence of the step fails); a draw that fails only fails its sequence
  // (StepOutput::tokens.failed). With several ranks, a rank that fails aborts the group so the others
  // throw dist::GroupAborted instead of waiting for it: the replica is then unusable.
  StepOutput run(StepInput in);

  // Start-up recording of every decode shape up to `max_batch` sequences of up to `max_context` tokens
  // (nothing when lazy, off, or the backend cannot record), with a progress line. Returns the recordings.
  int record_graphs(int32_t max_batch, int32_t max_context);

  const RunnerConfig& config() const { return cfg_; }
  const model::Model& model() const { return *model_; }
  backend::Backend& backend() const { return model_->backend(); }
  model::KVCache& kv() { return kv_; }
  bool samples_on_device() const { return device_sampling_; }
  // The recorded steps; null when recording is off or the backend cannot record.
  StepRecorder* recorder() { return recorder_.get(); }

 private:
  void init(std::optional<model::KVCache> pools = std::nullopt);
  model::ForwardOutput forward(const StepInput& in);
  StepOutput run_step(StepInput in);

  RunnerConfig cfg_;
  std::unique_ptr<backend::Backend> owned_backend_;  // declared before the model that lives on it
  std::unique_ptr<model::Model> owned_model_;
  const model::Model* model_ = nullptr;
  model::KVCache kv_;
  std::unique_ptr<StepRecorder> recorder_;
  bool device_sampling_ = false;
  int64_t steps_ = 0;
};

}  // namespace ds::runtime
