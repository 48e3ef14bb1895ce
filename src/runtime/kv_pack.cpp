#include "runtime/kv_pack.h"

#include <algorithm>
#include <cstring>

#include "runtime/model_runner.h"
#include "util/error.h"

namespace ds::runtime {

namespace {
constexpr uint32_t kMagic = 0x4B565044;  // "DPVK"
constexpr uint32_t kVersion = 3;
constexpr uint32_t kMaxDrafts = 64;
constexpr uint32_t kMaxTop = 1024;  // top_logprobs alternatives of the first token
constexpr uint32_t kMaxPools = 4096;

struct Header {
  uint32_t magic = kMagic, version = kVersion;
  int32_t first_token = -1;
  float first_logprob = 0;
  int32_t tokens = 0;
  uint32_t pools = 0;   // then `pools` uint64 row sizes
  uint32_t drafts = 0;  // then `drafts` int32 draft tokens
  uint32_t top = 0;     // then `top` (int32 token, float logprob) pairs, then the rows
};

size_t preamble_bytes(const Header& h) {
  return sizeof h + size_t(h.pools) * sizeof(uint64_t) + size_t(h.drafts) * sizeof(int32_t) +
         size_t(h.top) * (sizeof(int32_t) + sizeof(float));
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

HostBytes pack_prompt_kv(ModelRunner& rank, const std::vector<int32_t>& pages, const PackedKvHead& head,
                         HostBufferPool& buffers) {
  Header h;
  h.first_token = head.first_token;
  h.first_logprob = head.first_logprob;
  h.tokens = head.tokens;
  const std::vector<Tensor*> pools = pools_of(rank);
  h.pools = uint32_t(pools.size());
  DS_CHECK(head.drafts.size() <= kMaxDrafts, "KV pack: {} drafts", head.drafts.size());
  h.drafts = uint32_t(head.drafts.size());
  DS_CHECK(head.first_top.size() <= kMaxTop, "KV pack: {} top logprobs", head.first_top.size());
  h.top = uint32_t(head.first_top.size());
  std::vector<uint64_t> sizes;
  size_t total = preamble_bytes(h);
  for (Tensor* t : pools) {
    sizes.push_back(row_bytes(*t));
    total += row_bytes(*t) * size_t(head.tokens);
  }
  HostBytes out = buffers.take(total);
  uint8_t* at = out.data();
  auto put = [&](const void* p, size_t n) {
    if (n) std::memcpy(at, p, n);
    at += n;
  };
  put(&h, sizeof h);
  put(sizes.data(), sizes.size() * sizeof(uint64_t));
  put(head.drafts.data(), head.drafts.size() * sizeof(int32_t));
  for (const auto& [t, lp] : head.first_top) put(&t, 4), put(&lp, 4);
  backend::Backend& be = rank.backend();
  be.make_current();
  const std::vector<int32_t> rows = token_rows(pages, rank.config().page_size, head.tokens);
  for (Tensor* t : pools) {
    be.gather_rows_to_host(at, *t, rows);
    at += row_bytes(*t) * size_t(head.tokens);
  }
  return out;
}

PackedKvHead packed_kv_head(std::span<const uint8_t> packed) {
  Header h;
  DS_CHECK(packed.size() >= sizeof h, "KV transfer: {} bytes is too short for a packed KV", packed.size());
  std::memcpy(&h, packed.data(), sizeof h);
  DS_CHECK(h.magic == kMagic && h.version == kVersion, "KV transfer: not a packed KV of this dsserve version");
  DS_CHECK(h.drafts <= kMaxDrafts && h.top <= kMaxTop && h.pools <= kMaxPools && packed.size() >= preamble_bytes(h),
           "KV transfer: a packed KV with a damaged header");
  PackedKvHead head{h.first_token, h.first_logprob, h.tokens, std::vector<int32_t>(h.drafts), {}};
  const uint8_t* at = packed.data() + sizeof h + size_t(h.pools) * sizeof(uint64_t);
  if (h.drafts) std::memcpy(head.drafts.data(), at, size_t(h.drafts) * sizeof(int32_t));
  at += size_t(h.drafts) * sizeof(int32_t);
  head.first_top.resize(h.top);
  for (auto& [t, lp] : head.first_top) {
    std::memcpy(&t, at, 4);
    std::memcpy(&lp, at + 4, 4);
    at += 8;
  }
  return head;
}

PackedKvHead unpack_prompt_kv(const std::vector<ModelRunner*>& ranks, const std::vector<int32_t>& pages,
                              std::span<const uint8_t> packed) {
  PackedKvHead head = packed_kv_head(packed);
  Header h;
  std::memcpy(&h, packed.data(), sizeof h);
  const size_t pools = pools_of(*ranks[0]).size();
  DS_CHECK(h.pools == pools,
           "KV transfer: the prefill server has {} KV pools, this decode server {} (different layers, "
           "or speculative decoding's MTP layer on one side only)", h.pools, pools);
  std::vector<uint64_t> sizes(h.pools);
  std::memcpy(sizes.data(), packed.data() + sizeof h, sizes.size() * sizeof(uint64_t));
  size_t expect = preamble_bytes(h), k = 0;
  for (Tensor* t : pools_of(*ranks[0])) {
    DS_CHECK(sizes[k] == row_bytes(*t),
             "KV transfer: KV rows of {} bytes from the prefill server, {} here (different --kv-cache-dtype?)",
             sizes[k], row_bytes(*t));
    expect += row_bytes(*t) * size_t(h.tokens);
    ++k;
  }
  DS_CHECK(packed.size() == expect, "KV transfer: {} bytes arrived, the header says {}", packed.size(), expect);
  // Every rank holds the whole latent cache (replicated under tensor parallelism): the one packed copy goes
  // into each rank's pools, whatever --tp the prefill server had.
  for (ModelRunner* r : ranks) {
    backend::Backend& be = r->backend();
    be.make_current();
    const std::vector<int32_t> rows = token_rows(pages, r->config().page_size, h.tokens);
    size_t at = preamble_bytes(h);
    for (Tensor* t : pools_of(*r)) {
      be.scatter_rows_from_host(*t, rows, packed.data() + at);
      at += row_bytes(*t) * size_t(h.tokens);
    }
  }
  return head;
}

}  // namespace ds::runtime
