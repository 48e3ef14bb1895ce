// One forward step over many sequences: some prefilling a chunk, some decoding one token, each with
// its own page table into the KV pools. The model never sees requests, only this.
#pragma once
#include <atomic>
#include <cstdint>
#include <vector>

#include "tensor/tensor.h"
#include "util/error.h"

namespace ds::model {

enum class LogitsMode : uint8_t { None, Last, All };

struct SequenceChunk {
  std::vector<int32_t> tokens;      // the new tokens of this step
  int32_t start_pos = 0;            // tokens of this sequence already in the cache
  std::vector<int32_t> page_table;  // pages covering positions [0, start_pos + tokens.size())
  LogitsMode logits = LogitsMode::Last;
};

struct ForwardBatch {
  std::vector<SequenceChunk> seqs;
  bool want_hidden = false;  // also return the final-norm hidden state of every token (MTP input)
  bool hidden_on_device = false;  // ... left on the backend's device (speculative decoding's draft input)
  // Leave the logits where the backend computed them (ForwardOutput::logits is then a device tensor,
  // for Backend::sample): a step then copies no [rows, vocab] block to the host.
  bool logits_on_device = false;
  // Set by another thread when the step's result is no longer wanted (every request in it aborted,
  // shutdown): the forward then stops between layers by throwing StepCancelled. The KV entries it
  // wrote so far are garbage; only pages of the abandoned requests hold them.
  const std::atomic<bool>* cancel = nullptr;
  // DP attention (TensorParallel::dp_attention): the new tokens of every DP group in this step, by DP
  // rank (this group's entry is this batch's token count). The MoE layers exchange every group's tokens,
  // so every group steps together; a group with nothing to run brings a batch with no sequences (an idle
  // step: it only takes part in the exchanges). Empty without DP attention.
  std::vector<int32_t> dp_tokens;
  // DP attention, set by the engine when every group decodes (or idles) this step: the most sequences any
  // group has. A recorded step then pads every group, idle ones included, to that batch's bucket, so that
  // every rank's exchanges have one shape (runtime/step_recorder.h). 0: the step runs op by op.
  int32_t dp_decode_bs = 0;
  // With dp_decode_bs, when some group verifies drafts this step (speculative decoding) and every group's
  // batch fits a verify step of this many rows per sequence (runtime::verify_like_rows): every group pads
  // each sequence to these rows, plain decodes too, as one recorded verify shape. 0: a decode step.
  int32_t dp_verify_q = 0;
};

class StepCancelled : public ds::Error {
 public:
  StepCancelled() : ds::Error("the step was cancelled") {}
};

struct ForwardOutput {
  Tensor logits;                    // F32 [rows, vocab] on the host (on the backend's device when
                                    // logits_on_device): per sequence, its requested rows in order
  std::vector<int32_t> logits_row0; // first logits row of each sequence (-1 if it asked for none)
  Tensor hidden;                    // [T, hidden] when want_hidden (rows in token order): F32 on the host,
                                    // or the backend's activations on its device when hidden_on_device
};

}  // namespace ds::model
