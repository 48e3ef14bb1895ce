// Bytes of weights one rank keeps on a GPU, by part of the model, without making any: a dry run of
// assemble_weights for the rank's TensorParallel that sums what the CUDA backend would allocate (FP8
// linears with fp32 block scales, rows of scales padded to 4; BF16 linears and 2-D tables as BF16; vectors
// as fp32). For the memory plan of a deployment before it is run (`dsserve memory-plan`).
#pragma once
#include <cstdint>

#include "model/config.h"
#include "model/tensor_parallel.h"

namespace ds::model {

struct WeightBytes {
  int64_t attention = 0;       // q/kv projections, kv_b, o_proj, the indexer, their norms
  int64_t dense_mlp = 0;       // the first_k_dense_replace layers' MLPs
  int64_t routed_experts = 0;  // this rank's experts (or slices of every expert)
  int64_t shared_experts = 0;
  int64_t router = 0;          // router weights and biases
  int64_t embed_head = 0;      // the embedding and the LM head (this rank's vocabulary rows)
  int64_t norms = 0;           // layer norms, the final norm
  int64_t mtp = 0;             // the MTP layers' own tensors (they share the embedding and head)
  int64_t total() const {
    return attention + dense_mlp + routed_experts + shared_experts + router + embed_head + norms + mtp;
  }
};

// tp as a loaded rank has it (groups of the right sizes: validate() runs).
WeightBytes rank_weight_bytes(const ModelConfig& c, const TensorParallel& tp, bool with_mtp);

}  // namespace ds::model
