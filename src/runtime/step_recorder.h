// Steps as recorded graphs (SGLang's --cuda-graph-max-bs): a step of a uniform shape — every sequence
// decoding one token (ForwardMode::Decode) or verifying k tokens (TargetVerify; a sequence with fewer, or
// one decoding plainly beside them, is padded to k rows) — is padded to a batch-size bucket and given a
// context bucket, so that its shapes depend on (mode, tokens per sequence, the two
// buckets) only. Each such shape is recorded once (Backend::capture) and then replayed with the step's own
// index data: one upload and one launch instead of hundreds of launches and their host work.
//
// Recording happens at start-up for every bucket the server can meet (record_all; SGLang does the same),
// or, when lazy, at the first step of a shape (that step runs op by op and is then recorded). Padding
// sequences bring token 0 at positions 0.. of page 0 and write nothing (slot -1); their logits rows are
// dropped.
//
// DP attention: the MoE exchanges join every group's ranks, so every group must run the same recorded
// batch bucket: the engine marks a step where every group decodes or verifies (ForwardBatch::dp_decode_bs,
// the largest group's batch; dp_verify_q, the verify rows, when some group verifies: a decoding group's
// sequences are then padded to them too), every group pads to that bucket (an idle group runs all
// padding), and a shape that is not recorded runs padded op by op rather than unpadded. Recording is at start-up only (all ranks record the
// same shapes in the same order; a lazy first-sight recording on one group would meet no partner).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <tuple>
#include <vector>

#include "model/model.h"
#include "runtime/forward_mode.h"

namespace ds::runtime {

// The command line's --cuda-graph-max-bs default (serve, generate, bench model / engine).
constexpr int32_t kDefaultCudaGraphMaxBs = 160;

class StepRecorder {
 public:
  // max_bs: the largest batch recorded; lazy: record each shape at its first step instead of record_all.
  // hidden: where every step also leaves its tokens' final hidden states (speculative decoding: the draft
  // step reads them), rows in token order; a step with more tokens than its rows is not recorded. Owned
  // by the caller, at a fixed address; null: none (steps that want hidden states run op by op).
  StepRecorder(const model::Model& m, int32_t max_bs, bool lazy, const Tensor* hidden = nullptr);
  ~StepRecorder();

  // The step through a recording, or nullopt when it is not a shape the recorder covers (the caller runs
  // it op by op). Lazy: a shape met for the first time runs op by op here, is recorded, and its result
  // returned.
  std::optional<model::ForwardOutput> forward(ForwardMode mode, const model::ForwardBatch& batch,
                                              model::KVCache& cache);

  // Records `mode` steps of `tokens_per_seq` tokens for every batch bucket up to min(max_bs, max_batch) and
  // every context bucket up to max_context, writing `cache`'s pools. `progress(done, total)` after each.
  // Returns the recordings made (shapes whose capture failed stay op by op, logged by the backend).
  int record_all(ForwardMode mode, int32_t tokens_per_seq, int32_t max_batch, int32_t max_context,
                 model::KVCache& cache, const std::function<void(int, int)>& progress = {});

  // Buckets: batch sizes 1, 2, 4, 8, then multiples of 8 to 64, of 16 to 256, of 32 beyond (capped at
  // max_bs); contexts the next power of two from 256 (capped at the model's max_position_embeddings
  // when the context fits it).
  static int32_t batch_bucket(int32_t n, int32_t max_bs);
  static int32_t context_bucket(int32_t ctx, int32_t max_positions);
  // What record_all records (the draft recorder's too): the batch buckets up to min(max_bs, max_batch) and
  // the context buckets up to max_context's, in increasing order.
  static std::vector<int32_t> batch_buckets(int32_t max_batch, int32_t max_bs);
  static std::vector<int32_t> context_buckets(int32_t max_context, const model::Model& m);
  static int32_t max_positions(const model::Model& m);  // the context buckets' cap
  // Padding sequence s of q tokens: token 0 at positions 0..q-1 of page 0, written nowhere; its logits
  // rows (the last, or all q) are computed and dropped.
  static void add_padding(model::StepLayout& st, int32_t s, int32_t q, bool all_logits);
  // Recordings write the pools they were made with: true (and `id` updated) when `cache`'s pools are
  // others than `id` names, i.e. the recordings must go.
  static bool pools_changed(const model::KVCache& cache, const void*& id);

  struct Stats {
    int64_t captured = 0, replayed = 0, failed = 0;
    int64_t unrecorded = 0;  // not lazy: steps of a covered mode whose shape was not recorded (op by op)
    int64_t padded_dp_verify = 0;  // forward_padded_eager: verify steps padded under DP attention (tests)
  };
  const Stats& stats() const { return stats_; }
  // Speculative decoding: verify steps have q tokens per sequence; steps with fewer (or plain decodes
  // beside them) are padded into that shape (verify_like).
  void set_verify_tokens(int32_t q) { verify_q_ = q; }
  int32_t max_bs() const { return max_bs_; }
  bool lazy() const { return lazy_; }

  // Tests: the same padded, context-bucketed step run op by op (what a replay must reproduce).
  model::ForwardOutput forward_padded_eager(ForwardMode mode, const model::ForwardBatch& batch,
                                            model::KVCache& cache);
  // Whether a step fits a recorded shape (a decode or verify step of at most max_bs sequences; under DP
  // attention, the shape the engine declared for every group).
  bool eligible(ForwardMode mode, const model::ForwardBatch& batch) const;

 private:
  struct Padded;
  // Speculative decoding: a batch whose sequences each bring at most verify_q_ tokens with the logits of
  // all (a verify with fewer drafts) or one token with its logits (a request decoding plainly beside
  // speculating ones): padded into the recorded verify shape, rows beyond a sequence's own at its last
  // position, written nowhere, their logits dropped.
  bool verify_like(const model::ForwardBatch& batch) const;
  Padded pad_verify_like(const model::ForwardBatch& batch, const model::KVCache& cache, int32_t bucket) const;
  // The real rows of a padded step's logits / hidden states (padded_rows: none for a uniform step).
  model::ForwardOutput real_output(const Padded& p, const model::ForwardBatch& batch, const Tensor& logits) const;
  using Key = std::tuple<ForwardMode, int32_t, int32_t, int32_t>;  // mode, tokens per seq, batch, context
  Padded pad(ForwardMode mode, const model::ForwardBatch& batch, const model::KVCache& cache) const;
  Padded pad(ForwardMode mode, const model::ForwardBatch& batch, const model::KVCache& cache, int32_t bucket) const;
  Padded synthetic(ForwardMode mode, int32_t q, int32_t batch, int32_t context, int32_t page_size) const;
  model::ForwardOutput run_eager(const Padded& p, const model::ForwardBatch& batch, model::KVCache& cache);
  void record(const Padded& p, model::KVCache& cache);
  void follow_pools(const model::KVCache& cache);

  // The step's logits (and, with a hidden buffer, its hidden states written there).
  Tensor logits_of(const Padded& p, model::KVCache& cache) const;
  void add_hidden(model::ForwardOutput& out, const model::ForwardBatch& batch) const;

  const model::Model& m_;
  int32_t max_bs_;
  bool lazy_;
  const Tensor* hidden_ = nullptr;
  int32_t verify_q_ = 0;  // tokens per sequence of the recorded verify steps (record_all); 0: none
  const void* cache_id_ = nullptr;  // the KV pools the recordings write (recorded addresses)
  // shape -> recording; null: capturing it failed, that shape runs op by op.
  std::map<Key, std::unique_ptr<backend::CapturedStep>> graphs_;
  Stats stats_;
};

}  // namespace ds::runtime
