// How one rank's copy of the model is cut under tensor parallelism (SGLang's --tp / --ep meanings):
// MLA heads split across ranks (q_b, kv_b by rows, o_proj by columns; q_a, kv_a, the norms and the
// DSA indexer replicated), the dense MLP and shared experts column- then row-parallel, routed experts
// sliced the same way or, with expert parallelism, whole experts per rank, the LM head split over the
// vocabulary. The group's all-reduce joins the partial sums after o_proj and after the MLP / MoE; an
// all-gather joins the LM head's vocabulary slices.
#pragma once
#include <cstdint>
#include <string>
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
  // DP attention (SGLang's --enable-dp-attention): the `size` ranks form `dp` groups of size / dp
  // consecutive ranks; each group runs its own requests, with attention, the embedding and the LM head
  // cut over its ranks only (attn_group), while the MoE layers run over all ranks on the tokens of every
  // group (all-gather in, reduce-scatter out). Dense MLP layers do the same, or with dense_local (SGLang's
  // --moe-dense-tp-size 1) stay inside the group like attention. dp == 1: one group, attn_group == group.
  int dp = 1;
  dist::Group* attn_group = nullptr;  // this rank's DP group (null when it has one rank)
  bool dense_local = false;

  bool single() const { return size == 1; }
  bool dp_attention() const { return dp > 1; }
  int attn_size() const { return size / dp; }
  int attn_rank() const { return rank % attn_size(); }
  int dp_rank() const { return rank / attn_size(); }
  // The group that joins the attention heads' partial sums (null: a group of one, nothing to join).
  dist::Group* attention_group() const { return dp_attention() ? attn_group : group; }
  // This rank's [begin, end) of n items (n divides by size: validate() checks every split used).
  std::pair<int64_t, int64_t> split(int64_t n) const { return {n * rank / size, n * (rank + 1) / size}; }
  // ... of n items cut over its attention group (heads, vocabulary).
  std::pair<int64_t, int64_t> split_attn(int64_t n) const {
    return {n * attn_rank() / attn_size(), n * (attn_rank() + 1) / attn_size()};
  }
  // Whether a layer's FFN runs over all ranks on every DP group's tokens (the DP exchange).
  bool ffn_across_dp(bool moe) const { return dp_attention() && (moe || !dense_local); }
  // Throws ds::Error naming the constraint when `c` cannot be cut this way (heads, MLP widths, expert
  // count or vocabulary not divisible by the group size).
  void validate(const ModelConfig& c) const;
  // Ends every collective of this rank's groups (a rank failed: nobody may wait for it).
  void abort(const std::string& why) const;
};

}  // namespace ds::model
