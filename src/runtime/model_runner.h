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

class DraftRecorder;

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
  // Speculative decoding with the checkpoint's MTP layer: draft tokens per step (SGLang's
  // --speculative-num-steps); 0: off. Makes the buffer that recorded target steps leave their hidden
  // states in, and lets draft steps (ForwardMode::DraftExtend) run.
  int32_t draft_steps = 0;
  // Tests: run draft steps through the recorder's padded layout op by op where nothing records (the CPU
  // backend), so that its layout is checked against the plain draft step.
  bool draft_padded_eager = false;
  // Tests: every step a recording would take (decode and verify steps, DP attention's padded ones
  // included) runs in the recorded steps' padded layout op by op where nothing records (the CPU backend),
  // draft steps too. Also DSSERVE_PADDED_EAGER=1 (the e2e tests' servers).
  bool padded_eager = false;
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

  // Speculative decoding (runtime/spec_decode.h).
  // Target steps: keep every token's final hidden state on the device for the draft step that follows.
  bool keep_hidden = false;
  // `sample` holds one slot per logits row (a verify sequence has a row per token, a prefill chunk that
  // samples has one, one without logits none) instead of one per sequence.
  bool sample_per_row = false;
  // DraftExtend: the MTP layer over `batch`, whose tokens are each row's next token, reading rows
  // `hidden_rows` of the previous target step's kept hidden states; then draft_steps - 1 chained MTP
  // steps for the sequences whose logits mode is Last (each drafts draft_steps tokens, greedily, on every
  // rank: every rank needs them as the chain's inputs). `sample` is unused.
  std::vector<int32_t> hidden_rows;
  // DP attention: how many sequences draft in each DP group (the chained steps' exchanges).
  std::vector<int32_t> dp_drafting;
};

struct StepOutput {
  DrawnTokens tokens;     // per sequence (per logits row with sample_per_row)
  std::vector<std::vector<int32_t>> drafts;  // DraftExtend: per sequence, its draft tokens (none: empty)
  double forward_ms = 0;  // of the step's wall time, the forward (with device sampling: until its last
                          // kernels are queued; the device's tail counts as sampling)
  double masks_ms = 0;    // then the grammar masks (StepInput::before_sampling), while the device runs
  double draw_ms = 0;     // then the draws (with device sampling: the wait for the device, the sampling kernel)
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
  // The recorded draft steps; null without speculative decoding or recording.
  DraftRecorder* draft_recorder() { return draft_recorder_.get(); }

 private:
  void init(std::optional<model::KVCache> pools = std::nullopt);
  model::ForwardOutput forward(const StepInput& in);
  StepOutput run_step(StepInput in);
  StepOutput run_draft(StepInput in);  // spec_draft.cpp
  // Greedy tokens of every logits row of `out` (on every rank; device or host).
  std::vector<int32_t> greedy_rows(model::ForwardOutput& out);

  RunnerConfig cfg_;
  std::unique_ptr<backend::Backend> owned_backend_;  // declared before the model that lives on it
  std::unique_ptr<model::Model> owned_model_;
  const model::Model* model_ = nullptr;
  model::KVCache kv_;
  std::unique_ptr<StepRecorder> recorder_;
  std::unique_ptr<DraftRecorder> draft_recorder_;
  bool device_sampling_ = false;
  int64_t steps_ = 0;
  // Speculative decoding: the buffer recorded target steps write their hidden states to, and the hidden
  // states of the last target step that kept them (read by the draft step after it).
  Tensor hidden_buffer_;
  bool padded_eager_ = false;  // RunnerConfig::padded_eager (or its variable) where nothing records
  Tensor last_hidden_;
};

}  // namespace ds::runtime
