// Decode steps as recorded graphs (SGLang's --cuda-graph-max-bs): a step where every sequence decodes one
// token is padded to a batch-size bucket and given a context bucket, so that its shapes depend on the two
// buckets only; the first step of a bucket pair runs op by op and is then recorded (Backend::capture),
// later ones replay the recording with their own index data (one upload + one launch instead of
// hundreds of launches and their host work). Padding sequences decode token 0 at position 0 and write
// nothing (slot -1); their logits rows are dropped.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <utility>

#include "model/model.h"

namespace ds::model {

// The command line's --cuda-graph-max-bs default (serve, generate, bench model / engine).
constexpr int32_t kDefaultCudaGraphMaxBs = 160;

class StepGraphs {
 public:
  StepGraphs(const Model& m, int32_t max_bs);
  ~StepGraphs();

  // The step through a recorded graph, or nullopt when it is not a decode step the graphs cover (the
  // caller runs it op by op).
  std::optional<ForwardOutput> forward(const ForwardBatch& batch, KVCache& cache);

  // Buckets: batch sizes 1, 2, 4, 8, then multiples of 8 to 64, of 16 to 256, of 32 beyond (capped at
  // max_bs); contexts the next power of two from 256 (capped at the model's max_position_embeddings
  // when the context fits it).
  static int32_t batch_bucket(int32_t n, int32_t max_bs);
  static int32_t context_bucket(int32_t ctx, int32_t max_positions);

  struct Stats {
    int64_t captured = 0, replayed = 0, failed = 0;
  };
  const Stats& stats() const { return stats_; }

  // Tests: the same padded, context-bucketed step run op by op (what a replay must reproduce).
  ForwardOutput forward_padded_eager(const ForwardBatch& batch, KVCache& cache);

 private:
  bool eligible(const ForwardBatch& batch) const;
  struct Padded;
  Padded pad(const ForwardBatch& batch, const KVCache& cache) const;
  ForwardOutput run_eager(const Padded& p, const ForwardBatch& batch, KVCache& cache);

  const Model& m_;
  int32_t max_bs_;
  const void* cache_id_ = nullptr;  // the KV pools the graphs write (recorded addresses)
  // (batch bucket, context bucket) -> recording; null: capturing it failed, that shape runs op by op.
  std::map<std::pair<int32_t, int32_t>, std::unique_ptr<backend::CapturedStep>> graphs_;
  Stats stats_;
};

}  // namespace ds::model
