#include "model/tensor_parallel.h"

#include "dist/group.h"
#include "util/error.h"

namespace ds::model {

void TensorParallel::validate(const ModelConfig& c) const {
  DS_CHECK(size >= 1 && rank >= 0 && rank < size, "tensor parallel rank {} outside a group of {}", rank, size);
  if (size == 1) return;
  DS_CHECK(group && group->size() == size && group->rank() == rank,
           "tensor parallel rank {} of {} has no matching process group", rank, size);
  auto need = [&](int64_t n, const char* what) {
    DS_CHECK(n % size == 0, "--tp {}: the model's {} ({}) does not divide by {}", size, what, n, size);
  };
  need(c.num_attention_heads, "attention heads (num_attention_heads)");
  need(c.vocab_size, "vocabulary (vocab_size)");
  bool dense = false, moe = false;
  for (int64_t l = 0; l < c.num_hidden_layers + c.num_nextn_predict_layers; ++l)
    (c.is_moe_layer(l) ? moe : dense) = true;
  if (dense) need(c.intermediate_size, "dense MLP width (intermediate_size)");
  if (moe) {
    if (c.n_shared_experts > 0)
      need(c.moe_intermediate_size * c.n_shared_experts, "shared experts' width (moe_intermediate_size x n_shared_experts)");
    if (expert_parallel)
      need(c.n_routed_experts, "routed experts (n_routed_experts; --ep places whole experts on each rank)");
    else
      need(c.moe_intermediate_size, "expert width (moe_intermediate_size)");
  }
}

}  // namespace ds::model
