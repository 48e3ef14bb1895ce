// Draft steps of speculative decoding (runtime/spec_decode.h) as recorded graphs: after a verify or decode
// step, every drafting sequence brings the n (1..S+1) tokens the target just confirmed. The step runs as
// one padded KV-only pass over S+1 tokens per sequence (Pass::Confirmed, Model::mtp_fill_pass: the
// confirmed tokens' MTP KV, then padding rows that write nothing), then S single-token passes through the
// whole layer (Pass::Chain, Model::mtp_draft_pass), the first at the last confirmed token (the only one
// whose output is read), each later one at the next position on the pass before's draft, reading the
// token ids and hidden states it left in buffers of fixed address on the device: no host round trip
// between passes, one copy of the S x batch draft tokens to the host at the end. Each pass kind is
// recorded per batch bucket and context bucket (the buckets of runtime/step_recorder.h) at start-up (or,
// lazily, at its first step).
//
// Sequences that only fill the MTP layer's KV (prompt chunks before the last, requests without a draft
// budget) and the first tokens of a prompt's last chunk beyond S+1 run op by op first (Model::mtp_fill,
// KV only); the recorded passes take every drafting sequence's last <= S+1 tokens. Where each of those
// KV-only sequences brings one token (decode steps of requests that do not draft now: every one while
// speculation pauses, the layer still taking their KV), a third recorded pass writes it instead
// (Pass::Fill, Model::mtp_fill_pass), with or without drafting sequences beside them. Not covered (the
// runner's run_draft runs the step op by op): more drafting sequences than max_bs, a shape that was not
// recorded.
//
// DP attention (run_dp): the chain passes run the MoE, whose exchanges join every group, so every group
// runs all S of them padded to the bucket of the largest group's drafting count (in.dp_drafting, the same on
// every rank), a group with nothing to draft (idle, paused, only filling) on all-padding rows; the KV-only
// passes exchange nothing and stay each group's own. The verdict depends on dp_drafting alone, so every
// group agrees; a shape not recorded then runs padded op by op (never recorded then: recording is at
// start-up, by every rank together).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <tuple>
#include <vector>

#include "model/model.h"
#include "model/step.h"
#include "runtime/draft_split.h"
#include "runtime/model_runner.h"

namespace ds::runtime {

class DraftRecorder {
 public:
  // steps: draft tokens per step (S). record: replay recordings (the backend can capture); false: run the
  // same padded passes op by op (tests of the padded layout on backends that cannot record). lazy: record
  // each shape at its first step (run padded op by op then) instead of at start-up (record_all).
  DraftRecorder(const model::Model& m, int32_t max_bs, int32_t steps, bool record, bool lazy = false);
  ~DraftRecorder();

  // The drafts of every sequence of `in` (a DraftExtend step; last_hidden: the kept hidden states its
  // hidden_rows index), or nullopt when this step is not one the recorder covers (or, recording, its
  // shapes were not recorded): the caller then runs it op by op.
  std::optional<std::vector<std::vector<int32_t>>> run(const StepInput& in, const Tensor& last_hidden,
                                                       model::KVCache& cache);

  // Records both pass kinds for every batch bucket up to min(max_bs, max_batch) and every context bucket
  // up to max_context. Returns the recordings made.
  int record_all(int32_t max_batch, int32_t max_context, model::KVCache& cache,
                 const std::function<void(int, int)>& progress = {});

  struct Stats {
    int64_t captured = 0, failed = 0;
    int64_t recorded_steps = 0;  // draft steps run through the recorder (replays, or a lazy first sight)
    int64_t padded_eager = 0;  // draft steps run padded op by op (record = false)
    int64_t with_fill = 0;     // of the draft steps, those with an op-by-op KV-only part first
    int64_t fill_steps = 0;    // KV-only steps (one token a sequence, none drafting) run through the recorder
  };
  const Stats& stats() const { return stats_; }
  bool records() const { return record_; }

 private:
  enum class Pass : uint8_t { Confirmed, Chain, Fill };
  static const char* pass_name(Pass p);
  struct Layout {
    model::StepLayout st;
    Pass pass = Pass::Confirmed;
    int32_t batch = 0, context = 0;
  };
  using Key = std::tuple<Pass, int32_t, int32_t>;  // pass, batch bucket, context bucket

  // The step's parts (keep = S + 1: the drafting sequences' tokens the confirmed pass takes).
  struct Split : DraftSplit {
    bool ok = false;         // false: not covered (DP attention, too many drafting, ...)
    bool fill_pass = false;  // the KV-only part through the Fill pass (one token each), else op by op first
  };
  Split split(const StepInput& in) const;
  std::optional<std::vector<std::vector<int32_t>>> run_dp(const StepInput& in, const Tensor& last_hidden,
                                                          model::KVCache& cache);
  // The drafting sequences' inputs (kept hidden rows of their confirmed tokens, their last ones, their last
  // tokens) into the passes' buffers, padded to the bucket.
  void load_inputs(const Split& sp, const std::vector<int32_t>& confirmed, int32_t bucket, const Tensor& last_hidden);
  std::vector<std::vector<int32_t>> read_drafts(const Split& sp, size_t seqs);
  Layout confirmed_layout(const model::ForwardBatch& b, const model::KVCache& cache, int32_t bucket) const;
  Layout chain_layout(const model::ForwardBatch& b, const std::vector<int32_t>& confirmed, int32_t j,
                      const model::KVCache& cache, int32_t bucket) const;
  // A one-token-a-sequence pass over b as it is (chain and fill passes), padded to the bucket.
  Layout one_token_layout(Pass pass, const model::ForwardBatch& b, const model::KVCache& cache, int32_t bucket) const;
  Layout synthetic(Pass pass, int32_t batch, int32_t context, int32_t page_size) const;
  // Whether the KV-only part can take the Fill pass: one token a sequence, at most max_bs of them.
  bool fill_pass_fits(const Split& sp) const;
  // The KV-only part: through the Fill pass where it fits and was recorded, else op by op (Model::mtp_fill).
  void fill_kv(const Split& sp, const Tensor& last_hidden, model::KVCache& cache);
  // A KV-only step through the Fill pass (Split::fill_pass); false when its shape was not recorded.
  bool run_fill(const Split& sp, const Tensor& last_hidden, model::KVCache& cache);
  void finish(Layout& l, int32_t real, int32_t q) const;  // padding sequences and the context bucket
  // The pass over `l`: its recording, or op by op; leaves tokens in ids_ and hidden rows in hidden_.
  void pass(const Layout& l, model::KVCache& cache);
  // Padded op by op: throws where `l` could not replay a recording of its pass and buckets.
  void check_replayable(const Layout& l) const;
  Tensor body(const Layout& l, model::KVCache& cache);  // the device work of one pass (what is recorded)
  void record(const Layout& l, model::KVCache& cache);
  void follow_pools(const model::KVCache& cache);

  const model::Model& m_;
  int32_t max_bs_, steps_;
  bool record_, lazy_;
  Tensor in_hidden_;  // F32 [max_bs * (S + 1), hidden]: the KV-only passes' hidden states
  Tensor hidden_;     // F32 [max_bs, hidden]: each chain pass's input rows, then its output rows
  Tensor ids_;        // I32 [max_bs]: each pass's greedy tokens, the next pass's input
  Tensor drafts_;     // I32 [max_bs, S]: column j = pass j's tokens
  Tensor zeros_;      // F32 [max_bs, hidden] zeros: a DP group with nothing to draft pads its chain passes
  const void* cache_id_ = nullptr;
  std::map<Key, std::unique_ptr<backend::CapturedStep>> graphs_;
  Stats stats_;
};

}  // namespace ds::runtime
