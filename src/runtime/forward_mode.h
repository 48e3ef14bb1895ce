// What kind of step a forward is (SGLang's ForwardMode): the engine plans it, the runner records and
// replays by it, and speculative decoding adds its two modes. Modes differ in the shape of the batch:
//   Extend        prompt chunks only (prefill, chunked prefill, recomputation after retraction)
//   Decode        one new token per sequence, its logits
//   Mixed         prompt chunks and decodes in one step (continuous batching)
//   TargetVerify  k tokens per sequence (the last accepted token + k - 1 drafts), the logits of all k
//   DraftExtend   the draft model (MTP layer) over tokens the target has just accepted
#pragma once
#include <cstdint>

#include "model/forward_batch.h"

namespace ds::runtime {

enum class ForwardMode : uint8_t { Extend, Decode, Mixed, TargetVerify, DraftExtend };

const char* forward_mode_name(ForwardMode m);

// Extend, Decode, Mixed or TargetVerify (every sequence k > 1 tokens with the logits of all) from the
// batch's shape. Draft steps are never inferred: their planner names them.
ForwardMode classify_step(const model::ForwardBatch& batch);

// The new tokens every sequence brings in a step whose shape the recorder can pad: 1 for decode, k for
// verify; 0 when the batch does not have that mode's uniform shape.
int32_t uniform_tokens_per_seq(ForwardMode mode, const model::ForwardBatch& batch);
// Whether a batch fits a recorded verify step of q rows per sequence: every sequence verifies 1..q tokens
// (their logits all) or decodes one token plainly (its last logits), padded to q rows. The engine (DP
// attention: every group must agree) and the step recorder decide by this one rule.
bool verify_like_rows(const model::ForwardBatch& batch, int32_t q);

}  // namespace ds::runtime
