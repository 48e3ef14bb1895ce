// A draft step's tokens in two parts (runtime/spec_draft.cpp op by op, runtime/draft_recorder.h recorded):
// those that only fill the MTP layer's KV (Model::mtp_fill: every token of a sequence that does not draft,
// all but the last `keep` of one that does), and each drafting sequence's last `keep` tokens, which run the
// whole layer; each part with its rows of the target step's kept hidden states.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "model/model.h"
#include "runtime/model_runner.h"

namespace ds::runtime {

struct DraftSplit {
  model::ForwardBatch fill;             // KV-only tokens (logits None)
  std::vector<int32_t> fill_rows;       // their rows of the kept hidden states
  model::ForwardBatch drafting;         // each drafting sequence's last <= keep tokens (logits Last)
  std::vector<int32_t> drafting_rows;
  std::vector<size_t> index;            // drafting sequence k is the step's sequence index[k]
};

// Throws where a sequence asks for all logits, or in.hidden_rows does not give one row a token.
DraftSplit split_draft_step(const StepInput& in, size_t keep);

// The batch's token ids, sequence after sequence (an MTP pass's next tokens).
std::vector<int32_t> flat_tokens(const model::ForwardBatch& b);

}  // namespace ds::runtime
