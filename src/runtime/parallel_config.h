// How one model replica is spread over devices (TensorRT-LLM's WorldConfig, SGLang's tp/dp/ep flags),
// and where one runner sits in it. Threaded from the flags to every runner and the loader.
//
// Meanings follow SGLang: --tp N splits attention heads and dense/expert matrices over N ranks; --dp N
// without DP attention is N replicas of N x tp GPUs; with --enable-dp-attention the attention runs data
// parallel inside the tp group (each rank its own requests and KV) and the MoE layers expert parallel
// over all tp ranks; --ep N places whole experts on N ranks.
#pragma once
#include <cstdint>
#include <string>

namespace ds::runtime {

struct ParallelConfig {
  int32_t tp = 1, dp = 1, ep = 1;
  bool dp_attention = false;
  // --moe-dense-tp-size 1 (DP attention only): dense MLP layers stay inside each DP group (cut over its
  // attention ranks; whole when tp == dp) instead of running over all ranks on every group's tokens.
  bool moe_dense_local = false;
  int32_t rank = 0;          // this runner's rank in the world, 0..world_size()-1
  int32_t device_index = 0;  // the GPU it runs on (its rank on the node, unless given)

  // GPUs of the whole deployment: the tp group, times dp replicas unless the dp ranks live inside it.
  int32_t world_size() const { return dp_attention ? tp : tp * dp; }
  // Ranks of one DP group (a replica, or one DP-attention group: attention's tensor-parallel size), and
  // which group a rank is in: consecutive ranks, as SGLang numbers them.
  int32_t group_size() const { return dp_attention ? tp / dp : tp; }
  int32_t dp_rank() const { return rank / group_size(); }
  int32_t tp_rank() const { return rank % tp; }
  bool single() const { return world_size() == 1 && ep == 1; }

  // Throws ds::Error, naming the flag, for sizes that do not fit together (SGLang's rules: dp divides tp
  // with DP attention, ep is 1 or tp).
  void validate() const;
  std::string describe() const;  // "tp 1, dp 1, ep 1" (+ ", dp attention")
};

}  // namespace ds::runtime
