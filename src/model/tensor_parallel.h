// How one rank's copy of the model is cut under tensor parallelism (SGLang's --tp / --ep meanings):
// MLA heads split across ranks (q_b, kv_b by rows, o_proj by columns; q_a, kv_a, the norms and the
// DSA indexer replicated), the dense MLP and shared experts column- then row-parallel, routed experts
// sliced the same way or, with expert parallelism, whole experts per rank, the LM head split over the
// vocabulary. The group's all-reduce joins the partial sums after o_proj and after the MLP / MoE; an
// all-gather joins the LM head's vocabulary slices.
#pragma once
#include <cstdint>
#include <utility>

#include "model/config.h"

namespace ds::dist {
class Group;
}

namespace ds::model {

// Part of a 2-D [out, in] weight: rows [begin, end), columns [begin, end), or all of it.
struct Shard {
  enum class Axis : uint8_t { Whole, Rows, Cols };
  Axis axis = Axis::Whole;
  int64_t begin = 0, end = 0;
  static Shard rows(int64_t b, int64_t e) { return {Axis::Rows, b, e}; }
  static Shard cols(int64_t b, int64_t e) { return {Axis::Cols, b, e}; }
};

struct TensorParallel {
  int rank = 0, size = 1;
  bool expert_parallel = false;  // routed experts whole on their owner rank instead of sliced
  dist::Group* group = nullptr;  // the ranks' collectives; may be null only when size == 1

  bool single() const { return size == 1; }
  // This rank's [begin, end) of n items (n divides by size: validate() checks every split used).
  std::pair<int64_t, int64_t> split(int64_t n) const { return {n * rank / size, n * (rank + 1) / size}; }
  // Throws ds::Error naming the constraint when `c` cannot be cut this way (heads, MLP widths, expert
  // count or vocabulary not divisible by the group size).
  void validate(const ModelConfig& c) const;
};

}  // namespace ds::model
