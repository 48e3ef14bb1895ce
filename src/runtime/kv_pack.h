// A request's prompt KV as one byte string (prefill/decode disaggregation): a header (first token and its
// top logprobs, drafts, token count, the pools' row sizes), then for every pool (the latent pools of all
// layers, the MTP layer's included, then the indexer-key pools) the rows of tokens 0..n-1 in order. The rows
// are copied as they are in the pools (FP8 rows with their scales), so both sides must have the same pools:
// the same layers and KV dtype (checked on unpacking, clear error). Tensor parallelism replicates the latent
// cache and the indexer keys on every rank, so one rank's rows are packed and written into every rank of
// the decode side: the two sides' --tp may differ. Page sizes may differ too. Device pools are gathered / scattered on the device and copied to / from host memory
// (Backend::gather_rows_to_host / scatter_rows_from_host), straight into page-locked buffers from a pool.
#pragma once
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "util/host_buffer_pool.h"

namespace ds::runtime {

class ModelRunner;

struct PackedKvHead {
  int32_t first_token = -1;  // the token the prefill server drew after the prompt (-1: none, max_tokens 0)
  float first_logprob = 0;
  int32_t tokens = 0;        // prompt tokens whose rows follow
  // Speculative decoding: the MTP layer's drafts after first_token (the prefill server's draft step), which
  // the decode server verifies in its first step as if it had drafted them itself.
  std::vector<int32_t> drafts;
  // first_token's top_logprobs alternatives (when the request asked for them), most likely first.
  std::vector<std::pair<int32_t, float>> first_top;
};

// The rows of tokens [0, tokens) of the request whose page table is `pages`, from `rank` (any rank of its DP
// group: they hold the same rows), in a buffer lent by `buffers` (page-locked memory: the device copies
// straight into it).
HostBytes pack_prompt_kv(ModelRunner& rank, const std::vector<int32_t>& pages, const PackedKvHead& head,
                         HostBufferPool& buffers);
// The header alone (checked: magic and size).
PackedKvHead packed_kv_head(std::span<const uint8_t> packed);
// Writes the packed rows into `pages` (which must cover head.tokens tokens) of every rank's pools.
// Throws ds::Error naming the difference when the pools do not match the packing side's.
PackedKvHead unpack_prompt_kv(const std::vector<ModelRunner*>& ranks, const std::vector<int32_t>& pages,
                              std::span<const uint8_t> packed);

}  // namespace ds::runtime
