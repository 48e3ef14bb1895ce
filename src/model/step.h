// The flattened layout of one forward step (Model::layout): per token its id, sequence, position and pool
// slot; per sequence its first token, context and page table; the rows that get logits. The model runs
// it op by op (Model::forward, Model::step_logits); the runner pads it to buckets and records it
// (runtime/step_recorder.h).
#pragma once
#include <atomic>
#include <vector>

#include "backend/backend.h"

namespace ds::model {

struct StepLayout {
  backend::AttnBatch ab;
  std::vector<int32_t> ids;          // [T]
  std::vector<int32_t> slots;        // [T] pool rows written by this step (-1: a padding row, nothing)
  std::vector<int32_t> token0;       // [S] first token of each sequence in the flattened batch
  std::vector<int32_t> ctx;          // [S] context length after this step
  std::vector<int32_t> logit_rows;   // [R] tokens whose logits the step returns, in order
  std::vector<int32_t> logits_row0;  // [S] first logits row of each sequence, -1 if none
  const std::atomic<bool>* cancel = nullptr;  // ForwardBatch::cancel, checked between layers
  std::vector<int32_t> dp_tokens;    // ForwardBatch::dp_tokens (DP attention)

  backend::StepIndex index() const { return {&ids, &slots, &logit_rows, &ab}; }
  // Throws unless a recording of `recorded` could replay this step: the same tokens, logits rows, sequences
  // and DP exchange counts (the CUDA backend refuses another shape). For padded steps run op by op where
  // nothing replays (the CPU tests), so that they also prove the GPU's replay would take them.
  void check_replays_as(const StepLayout& recorded, const char* what) const;
};

// Binds a step's index data to the backend for the ops of one forward (backend::Backend::bind_step).
class StepBinding {
 public:
  StepBinding(backend::Backend& be, const StepLayout& st) : be_(be), idx_(st.index()) { be_.bind_step(&idx_); }
  ~StepBinding() { be_.bind_step(nullptr); }
  StepBinding(const StepBinding&) = delete;
  StepBinding& operator=(const StepBinding&) = delete;

 private:
  backend::Backend& be_;
  backend::StepIndex idx_;
};

}  // namespace ds::model
