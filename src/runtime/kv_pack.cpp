#include "runtime/kv_pack.h"

#include <algorithm>
#include <cstring>

#include "runtime/model_runner.h"
#include "util/error.h"

namespace ds::runtime {

namespace {
constexpr uint32_t kMagic = 0x4B565044;  // "DPVK"
constexpr uint32_t kVersion = 2;
constexpr uint32_t kMaxDrafts = 64;

struct Header {
  uint32_t magic = kMagic, version = kVersion;
  int32_t first_token = -1;
  float first_logprob = 0;
  int32_t tokens = 0;
  uint32_t ranks = 0, pools = 0;  // pools per rank; then `ranks * pools` uint64 row sizes
  uint32_t drafts = 0;            // then `drafts` int32 draft tokens, then the rows
  uint32_t reserved = 0;
};

size_t preamble_bytes(const Header& h) {
  return sizeof h + size_t(h.ranks) * h.pools * sizeof(uint64_t) + size_t(h.drafts) * sizeof(int32_t);
}

// Every pool of a rank, in packing order: the latent pools of all layers (the MTP layer's last), then the
// indexer-key pools.
std::vector<Tensor*> pools_of(ModelRunner& r) {
  std::vector<Tensor*> all;
  for (Tensor& t : r.kv().latent) all.push_back(&t);
  for (Tensor& t : r.kv().index_k) all.push_back(&t);
  return all;
}

size_t row_bytes(const Tensor& t) { return size_t(t.row_size()) * dtype_size(t.dtype()); }

// The pool rows of tokens [0, tokens) of a request whose page table is `pages`.
std::vector<int32_t> token_rows(const std::vector<int32_t>& pages, int32_t page_size, int32_t tokens) {
  DS_CHECK(int64_t(pages.size()) * page_size >= tokens, "KV pack: {} pages of {} cannot hold {} tokens", pages.size(),
           page_size, tokens);
  std::vector<int32_t> rows(size_t(std::max(tokens, 0)));
  for (int32_t t = 0; t < tokens; ++t) rows[size_t(t)] = pages[size_t(t / page_size)] * page_size + t % page_size;
  return rows;
}
}  // namespace

std::vector<uint8_t> pack_prompt_kv(const std::vector<ModelRunner*>& ranks, const std::vector<int32_t>& pages,
                                    const PackedKvHead& head) {
  Header h;
  h.first_token = head.first_token;
  h.first_logprob = head.first_logprob;
  h.tokens = head.tokens;
  h.ranks = uint32_t(ranks.size());
  h.pools = uint32_t(pools_of(*ranks[0]).size());
  DS_CHECK(head.drafts.size() <= kMaxDrafts, "KV pack: {} drafts", head.drafts.size());
  h.drafts = uint32_t(head.drafts.size());
  std::vector<uint64_t> sizes;
  size_t total = sizeof h + head.drafts.size() * sizeof(int32_t);
  for (ModelRunner* r : ranks) {
    auto pools = pools_of(*r);
    DS_CHECK(pools.size() == h.pools, "KV pack: ranks with different pools");
    for (Tensor* t : pools) {
      sizes.push_back(row_bytes(*t));
      total += sizeof(uint64_t) + row_bytes(*t) * size_t(head.tokens);
    }
  }
  std::vector<uint8_t> out(total);
  std::memcpy(out.data(), &h, sizeof h);
  std::memcpy(out.data() + sizeof h, sizes.data(), sizes.size() * sizeof(uint64_t));
  size_t at = sizeof h + sizes.size() * sizeof(uint64_t);
  if (!head.drafts.empty()) std::memcpy(out.data() + at, head.drafts.data(), head.drafts.size() * sizeof(int32_t));
  at += head.drafts.size() * sizeof(int32_t);
  for (ModelRunner* r : ranks) {
    backend::Backend& be = r->backend();
    be.make_current();
    const std::vector<int32_t> rows = token_rows(pages, r->config().page_size, head.tokens);
    for (Tensor* t : pools_of(*r)) {
      be.gather_rows_to_host(out.data() + at, *t, rows);
      at += row_bytes(*t) * size_t(head.tokens);
    }
  }
  return out;
}

PackedKvHead packed_kv_head(std::span<const uint8_t> packed) {
  Header h;
  DS_CHECK(packed.size() >= sizeof h, "KV transfer: {} bytes is too short for a packed KV", packed.size());
  std::memcpy(&h, packed.data(), sizeof h);
  DS_CHECK(h.magic == kMagic && h.version == kVersion, "KV transfer: not a packed KV of this dsserve version");
  DS_CHECK(h.drafts <= kMaxDrafts && h.ranks <= 4096 && h.pools <= 4096 && packed.size() >= preamble_bytes(h),
           "KV transfer: a packed KV with a damaged header");
  PackedKvHead head{h.first_token, h.first_logprob, h.tokens, std::vector<int32_t>(h.drafts)};
  if (h.drafts)
    std::memcpy(head.drafts.data(), packed.data() + sizeof h + size_t(h.ranks) * h.pools * sizeof(uint64_t),
                size_t(h.drafts) * sizeof(int32_t));
  return head;
}

PackedKvHead unpack_prompt_kv(const std::vector<ModelRunner*>& ranks, const std::vector<int32_t>& pages,
                              std::span<const uint8_t> packed) {
  const PackedKvHead head = packed_kv_head(packed);
  Header h;
  std::memcpy(&h, packed.data(), sizeof h);
  const size_t pools = pools_of(*ranks[0]).size();
  DS_CHECK(h.ranks == ranks.size(), "KV transfer: the prefill server has {} tensor-parallel ranks, this decode server {}",
           h.ranks, ranks.size());
  DS_CHECK(h.pools == pools,
           "KV transfer: the prefill server has {} KV pools per rank, this decode server {} (different layers, "
           "or speculative decoding's MTP layer on one side only)", h.pools, pools);
  std::vector<uint64_t> sizes(size_t(h.ranks) * h.pools);
  DS_CHECK(packed.size() >= sizeof h + sizes.size() * sizeof(uint64_t), "KV transfer: truncated packed KV");
  std::memcpy(sizes.data(), packed.data() + sizeof h, sizes.size() * sizeof(uint64_t));
  size_t expect = preamble_bytes(h), k = 0;
  for (ModelRunner* r : ranks)
    for (Tensor* t : pools_of(*r)) {
      DS_CHECK(sizes[k] == row_bytes(*t),
               "KV transfer: KV rows of {} bytes from the prefill server, {} here (different --kv-cache-dtype?)",
               sizes[k], row_bytes(*t));
      expect += row_bytes(*t) * size_t(h.tokens);
      ++k;
    }
  DS_CHECK(packed.size() == expect, "KV transfer: {} bytes arrived, the header says {}", packed.size(), expect);
  size_t at = preamble_bytes(h);
  for (ModelRunner* r : ranks) {
    backend::Backend& be = r->backend();
    be.make_current();
    const std::vector<int32_t> rows = token_rows(pages, r->config().page_size, h.tokens);
    for (Tensor* t : pools_of(*r)) {
      be.scatter_rows_from_host(*t, rows, packed.data() + at);
      at += row_bytes(*t) * size_t(h.tokens);
    }
  }
  return head;
}

}  // namespace ds::runtime
