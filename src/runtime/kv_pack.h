// A request's prompt KV as one byte string (prefill/decode disaggregation): a header (first token, token
// count, the pools' row sizes), then, for every rank of the DP group and every pool (the latent pools of
// all layers, the MTP layer's included, then the indexer-key pools), the rows of tokens 0..n-1 in order.
// The rows are copied as they are in the pools (FP8 rows with their scales), so both sides must have the
// same pools: the same layers, KV dtype and tensor-parallel ranks (checked on unpacking, clear error).
// Page sizes may differ. Device pools are staged through host memory (Backend::copy_bytes_*).
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace ds::runtime {

class ModelRunner;

struct PackedKvHead {
  int32_t first_token = -1;  // the token the prefill server drew after the prompt (-1: none, max_tokens 0)
  float first_logprob = 0;
  int32_t tokens = 0;        // prompt tokens whose rows follow
  // Speculative decoding: the MTP layer's drafts after first_token (the prefill server's draft step), which
  // the decode server verifies in its first step as if it had drafted them itself.
  std::vector<int32_t> drafts;
};

// The rows of tokens [0, tokens) of the request whose page table is `pages`, from every rank in `ranks`.
std::vector<uint8_t> pack_prompt_kv(const std::vector<ModelRunner*>& ranks, const std::vector<int32_t>& pages,
                                    const PackedKvHead& head);
// The header alone (checked: magic and size).
PackedKvHead packed_kv_head(std::span<const uint8_t> packed);
// Writes the packed rows into `pages` (which must cover head.tokens tokens) of every rank's pools.
// Throws ds::Error naming the difference when the pools do not match the packing side's.
PackedKvHead unpack_prompt_kv(const std::vector<ModelRunner*>& ranks, const std::vector<int32_t>& pages,
                              std::span<const uint8_t> packed);

}  // namespace ds::runtime
