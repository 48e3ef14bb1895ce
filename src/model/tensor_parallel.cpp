#include "model/tensor_parallel.h"

#include "dist/group.h"
#include "util/error.h"

namespace ds::model {

void TensorParallel::validate(const ModelConfig& c) const {
  DS_CHECK(size >= 1 && rank >= 0 && rank < size, "tensor parallel rank {} outside a group of {}", rank, size);
  DS_CHECK(dp >= 1 && size % dp == 0, "--dp {} does not divide the {} ranks of DP attention", dp, size);
  if (size == 1) return;
  DS_CHECK(group && group->size() == size && group->rank() == rank,
           "tensor parallel rank {} of {} has no matching process group", rank, size);
  if (dp_attention() && attn_size() > 1)
    DS_CHECK(attn_group && attn_group->size() == attn_size() && attn_group->rank() == attn_rank(),
             "DP attention rank {} has no matching attention group of {}", rank, attn_size());
  auto need = [&](int64_t n, int64_t by, const char* what) {
    DS_CHECK(n % by == 0, "{}: the model's {} ({}) does not divide by {}",
             dp_attention() ? fmt::format("--tp {} --dp {}", size, dp) : fmt::format("--tp {}", size), what, n, by);
  };
  const int a = attn_size();
  need(c.num_attention_heads, a, "attention heads (num_attention_heads)");
  need(c.vocab_size, a, "vocabulary (vocab_size)");
  bool dense = false, moe = false;
  for (int64_t l = 0; l < c.num_hidden_layers + c.num_nextn_predict_layers; ++l)
    (c.is_moe_layer(l) ? moe : dense) = true;
  if (dense) need(c.intermediate_size, ffn_across_dp(false) ? size : a, "dense MLP width (intermediate_size)");
  if (moe) {
    if (c.n_shared_experts > 0)
      need(c.moe_intermediate_size * c.n_shared_experts, size,
           "shared experts' width (moe_intermediate_size x n_shared_experts)");
    if (expert_parallel)
      need(c.n_routed_experts, size, "routed experts (n_routed_experts; --ep places whole experts on each rank)");
    else
      need(c.moe_intermediate_size, size, "expert width (moe_intermediate_size)");
  }
}

void TensorParallel::abort(const std::string& why) const {
  if (group) group->abort(why);
  if (attn_group && attn_group != group) attn_group->abort(why);
}

}  // namespace ds::model
