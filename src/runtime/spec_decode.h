// Speculative decoding with the checkpoint's MTP layer (SGLang's EAGLE / NEXTN with topk 1): every decode
// step of a request verifies the draft tokens the MTP layer proposed after the previous step.
//
//   target step   the request's last token + its drafts d1..dS at once (ForwardMode::TargetVerify, or
//                 mixed with prefill chunks and plain decodes); a token is drawn at every row with the
//                 request's own sampling: row j as if d1..dj had been accepted (output index + j). The
//                 drafts are accepted while the draw equals them; the first draw that differs (or the
//                 draw after the last draft) is the step's own token. Each emitted token is thus a draw
//                 from the target's distribution given the tokens before it: greedy outputs are those
//                 of plain decoding, sampled ones have plain decoding's distribution (with a fixed seed on
//                 the device, the same tokens: draws are keyed on (seed, output index)). This is
//                 rejection sampling for a draft that proposes one token (accept d with probability
//                 p(d), else draw from p without d), with the draw and the test in one.
//   draft step    (ForwardMode::DraftExtend, runtime/spec_draft.cpp) the MTP layer over the positions the
//                 target has just confirmed (its hidden states + the next tokens; after every prefill
//                 chunk too, so the MTP layer's KV covers the prompt), then S - 1 chained single steps on
//                 its own hidden state; S greedy drafts per request.
//
// The KV the target wrote for rejected drafts stays in the request's pages beyond `computed` and is
// overwritten later; drafts are never part of `tokens`, so never counted, output or cached.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "runtime/engine.h"

namespace ds::runtime {

struct RequestState;

// Whether a request decodes speculatively. Draws whose state a rejected draft would have advanced
// decode plainly: penalties (the device keeps their token counts incrementally) and forced continuations
// (their masks follow the accepted tokens). A grammar speculates: each verify row is sampled under the
// mask after its draft prefix (GrammarTracker::plan_rows), drafts the grammar refuses are cut before the
// step, and the matcher then advances through the emitted tokens only.
bool speculates(const GenerateRequest& in);

// The pause rule (per DP group, since a step is one batch: a batch where some requests verify drafts and
// others decode plainly would not have a recorded shape): the mean tokens per verifying request of each
// verify step go into a window; once kSpecWindow steps are in and their mean is below min_accept_length,
// the group pauses speculation (plain decoding, recorded), then tries again. Drafts that are rarely accepted
// cost a draft step and a longer verify every step, so the pause starts at kSpecPauseSteps and doubles
// with every try that fails again, up to kSpecPauseMaxSteps; a window that meets the bound resets it.
// Zero acceptance then costs about kSpecWindow slow steps in every 256, 512, ... then every 2048 steps
// (~12 plain steps' worth in 2056: 0.6% at a verify step of 2.5x a plain one); drafts that recover are
// tried again within 2048 steps.
constexpr size_t kSpecWindow = 8;
constexpr int64_t kSpecPauseSteps = 256, kSpecPauseMaxSteps = 2048;
class SpecPause {
 public:
  bool paused(int64_t step) const { return step < until_; }
  // After a step at `step` whose verifying requests emitted `tokens` in all (`requests` of them). True
  // when speculation pauses from the next step on (for last_pause() steps).
  bool record(int64_t step, int64_t tokens, int64_t requests, double min_accept_length);
  int64_t pauses() const { return pauses_; }
  int64_t last_pause() const { return last_pause_; }

 private:
  std::vector<double> window_;
  int64_t until_ = 0, pauses_ = 0, last_pause_ = 0;
  int64_t next_pause_ = kSpecPauseSteps;  // the next pause's length: doubles while tries keep failing
};

// How many drafts the request may verify in its next step (<= steps): what its max_new_tokens still
// allows after the step's own token, and positions that stay inside the context length. by_output false:
// the context alone (a prefill server's drafts: the decode server applies max_new_tokens).
int32_t draft_budget(const RequestState& r, int32_t steps, int32_t context_length, bool by_output = true);

}  // namespace ds::runtime
