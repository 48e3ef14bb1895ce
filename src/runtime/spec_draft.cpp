// The runner's draft step (ForwardMode::DraftExtend) of speculative decoding: the MTP layer extended over
// the tokens the target has just accepted (or prefilled), reading the target's kept hidden states, then
// chained over its own drafts. See runtime/spec_decode.h for the whole loop.
#include <algorithm>

#include "backend/backend.h"
#include "runtime/draft_recorder.h"
#include "runtime/draft_split.h"
#include "runtime/model_runner.h"
#include "util/error.h"
#include "util/timer.h"

namespace ds::runtime {

std::vector<int32_t> ModelRunner::greedy_rows(model::ForwardOutput& out) {
  const int64_t rows = out.logits.defined() ? out.logits.dim(0) : 0;
  if (rows == 0) return {};
  // The server's own draws, greedy, one slot per row (on the device where the backend samples).
  GreedySampling greedy;
  const std::vector<SampleSlot> slots = greedy.slots(size_t(rows));
  out.logits_row0.resize(size_t(rows));
  for (int64_t r = 0; r < rows; ++r) out.logits_row0[size_t(r)] = int32_t(r);
  DrawnTokens drawn(slots.size());
  const int64_t vocab = model_->config().vocab_size;
  if (device_sampling_) sample_on_device(backend(), slots, out, vocab, drawn);
  else sample_on_host(slots, out, vocab, drawn);
  // A row that could not be drawn (non-finite logits) drafts token 0: the target rejects it (a draft never
  // decides an output token).
  std::vector<int32_t> ids(size_t(rows), 0);
  for (size_t r = 0; r < ids.size(); ++r)
    if (drawn.failed[r].empty()) ids[r] = std::max(drawn.drawn[r].token, 0);
  return ids;
}

StepOutput ModelRunner::run_draft(StepInput in) {
  const model::Model& m = *model_;
  const int32_t steps = cfg_.draft_steps;
  DS_CHECK(steps > 0 && m.has_mtp(), "a draft step on a runner without speculative decoding");
  StepOutput res;
  Timer fwd;
  model::ForwardBatch& batch = in.batch;
  batch.want_hidden = batch.hidden_on_device = true;
  batch.logits_on_device = device_sampling_;
  const bool chain_anywhere =
      steps > 1 && (in.dp_drafting.empty() ? true
                                           : std::any_of(in.dp_drafting.begin(), in.dp_drafting.end(),
                                                         [](int32_t n) { return n > 0; }));
  auto idle_chain = [&] {  // DP attention: this group has nothing (more) to draft; the others may
    if (!chain_anywhere || in.dp_drafting.empty()) return;
    for (int32_t j = 1; j < steps; ++j) {
      model::ForwardBatch idle;
      idle.dp_tokens = in.dp_drafting;
      m.mtp_forward(idle, {}, kv_);
    }
  };
  // The recorded (or padded) passes first. Under DP attention every group takes them, idle ones included,
  // or none (the verdict depends on dp_drafting alone, the same on every rank); otherwise the recorder
  // declines a step it does not cover (and one without kept hidden states: the check below names it).
  if (draft_recorder_ && backend().can_capture() == draft_recorder_->records())
    if (auto drafts = draft_recorder_->run(in, last_hidden_, kv_)) {
      last_hidden_ = Tensor();
      res.drafts = std::move(*drafts);
      res.forward_ms = fwd.seconds() * 1e3;
      return res;
    }
  if (batch.seqs.empty()) {  // an idle DP group: only the exchanges
    DS_CHECK(m.tensor_parallel().dp_attention(), "draft step: empty batch");
    m.mtp_forward(batch, {}, kv_);
    idle_chain();
    res.forward_ms = fwd.seconds() * 1e3;
    return res;
  }
  DS_CHECK(last_hidden_.defined(), "a draft step needs the hidden states kept by the target step before it");
  // Every token but each drafting sequence's last only fills the MTP layer's KV (Model::mtp_fill: nobody
  // reads those tokens' outputs); the last tokens run the whole layer and draft. Under DP attention the
  // exchanges carry those last tokens alone (the engine's dp_tokens are the groups' drafting counts).
  DraftSplit sp = split_draft_step(in, 1);
  for (int32_t r : in.hidden_rows)
    DS_CHECK(r >= 0 && r < last_hidden_.dim(0), "draft step: hidden row {} of {}", r, last_hidden_.dim(0));
  model::ForwardBatch& fill = sp.fill;
  model::ForwardBatch& extend = sp.drafting;
  extend.want_hidden = extend.hidden_on_device = true;
  extend.logits_on_device = device_sampling_;
  extend.dp_tokens = batch.dp_tokens;
  const std::vector<size_t>& drafting = sp.index;  // the sequences that draft, in batch order
  model::MtpInput fill_in, extend_in;
  if (!fill.seqs.empty()) {
    fill_in.next_tokens = flat_tokens(fill);
    fill_in.hidden = backend().cache_gather(last_hidden_, sp.fill_rows);
    m.mtp_fill(fill, fill_in, kv_);
  }
  res.drafts.resize(batch.seqs.size());
  if (drafting.empty()) {
    last_hidden_ = Tensor();
    if (!extend.dp_tokens.empty()) m.mtp_forward(extend, {}, kv_);  // DP attention: the others' exchanges
    idle_chain();
    res.forward_ms = fwd.seconds() * 1e3;
    return res;
  }
  extend_in.next_tokens = flat_tokens(extend);
  extend_in.hidden = backend().cache_gather(last_hidden_, sp.drafting_rows);
  last_hidden_ = Tensor();  // read once
  model::ForwardOutput out = m.mtp_forward(extend, extend_in, kv_);
  std::vector<int32_t> tok = greedy_rows(out);
  DS_CHECK(tok.size() == drafting.size(), "draft step: {} draft rows for {} drafting sequences", tok.size(),
           drafting.size());
  for (size_t k = 0; k < drafting.size(); ++k) res.drafts[drafting[k]].push_back(tok[k]);
  // Each drafting sequence's row of out.hidden is its k-th (one token each).
  Tensor hidden = out.hidden;
  // Chained steps: MTP at the position after the previous one, on its own hidden state and draft.
  for (int32_t j = 1; j < steps; ++j) {
    model::ForwardBatch chain;
    chain.want_hidden = chain.hidden_on_device = true;
    chain.logits_on_device = device_sampling_;
    chain.dp_tokens = in.dp_drafting;
    for (size_t k = 0; k < drafting.size(); ++k) {
      const model::SequenceChunk& sc = batch.seqs[drafting[k]];
      model::SequenceChunk c;
      c.tokens = {tok[k]};
      c.start_pos = sc.start_pos + int32_t(sc.tokens.size()) + j - 1;
      c.page_table = sc.page_table;
      c.logits = model::LogitsMode::Last;
      chain.seqs.push_back(std::move(c));
    }
    model::MtpInput ci;
    ci.hidden = hidden;
    ci.next_tokens = tok;
    model::ForwardOutput o = m.mtp_forward(chain, ci, kv_);
    tok = greedy_rows(o);
    for (size_t k = 0; k < drafting.size(); ++k) res.drafts[drafting[k]].push_back(tok[k]);
    hidden = o.hidden;
  }
  res.forward_ms = fwd.seconds() * 1e3;
  return res;
}

}  // namespace ds::runtime
