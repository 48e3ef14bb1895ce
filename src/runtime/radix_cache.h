// Prefix cache over token ids, at page granularity (as SGLang's paged radix cache): a tree whose
// edges are runs of whole pages of tokens, each page mapped to the KV-pool page holding it. A
// request whose prompt starts with a cached prefix reuses those pages instead of recomputing them.
//
// Ownership: the cache holds one PagePool reference on every page it stores. The suggested use by
// a scheduler (what the tests exercise):
//   m = cache.match_prefix(prompt);  pool.retain(m.pages);  cache.lock(m.node);
//   page_table = m.pages + pool.allocate(...);  ... run ...
//   cache.insert(tokens, page_table);  cache.unlock(m.node);  pool.release(page_table);
// Lock before evicting to make room for the rest of the request, or the eviction may take the
// matched prefix itself. lock() keeps a prefix in use from being evicted (eviction would free nothing while the request
// still holds the pages, and the scheduler would count on room that is not there).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <vector>

#include "runtime/page_pool.h"

namespace ds::runtime {

class RadixCache {
 public:
  struct Node;  // opaque to users: a handle for lock/unlock

  struct MatchResult {
    int64_t num_tokens = 0;      // whole pages only: a multiple of page_size
    std::vector<int32_t> pages;  // num_tokens / page_size pages, in order
    Node* node = nullptr;        // the node ending exactly at num_tokens (the root if none matched)
  };

  struct InsertResult {
    int64_t already_cached_tokens = 0;  // leading tokens that were in the tree before this insert
    // The caller's pages whose position was already cached under another page: redundant copies
    // the caller may release (or swap for `pages`) once it no longer reads them.
    std::vector<int32_t> duplicates;
    std::vector<int32_t> pages;  // the cached pages of the inserted prefix (canonical page table)
    Node* node = nullptr;        // the node ending at the inserted prefix
  };

  explicit RadixCache(PagePool& pool);
  ~RadixCache();
  RadixCache(const RadixCache&) = delete;
  RadixCache& operator=(const RadixCache&) = delete;

  // The longest cached prefix of `tokens` in whole pages; marks it recently used. Callers that need
  // logits for the last prompt token pass tokens without it, so at least one token is computed.
  MatchResult match_prefix(std::span<const int32_t> tokens);

  // How many leading tokens of `tokens` are cached, in whole pages, without touching anything (no LRU
  // mark, no node split, no hit-rate count): what a router asks before choosing a cache.
  int64_t cached_prefix_tokens(std::span<const int32_t> tokens) const;

  // Caches the whole pages of `tokens` (a partial last page is not cached); `pages` is the caller's
  // page table and must cover at least those whole pages. Takes a reference on newly cached pages.
  InsertResult insert(std::span<const int32_t> tokens, std::span<const int32_t> pages);

  // In-use marks on a node and all its ancestors; locked nodes are never evicted.
  void lock(Node* node);
  void unlock(Node* node);

  // Drops the cache's reference on at least `num_pages` pages (fewer if not enough are evictable),
  // least-recently-used unlocked leaves first, whole nodes at a time. Returns the pages dropped.
  std::vector<int32_t> evict(int32_t num_pages);

  // Drops everything (flush_cache). Refused while any prefix is locked.
  void reset();

  int32_t page_size() const { return page_size_; }
  int32_t cached_pages() const { return cached_pages_; }
  int32_t evictable_pages() const { return cached_pages_ - locked_pages_; }
  int32_t locked_pages() const { return locked_pages_; }
  int64_t hit_tokens() const { return hit_tokens_; }
  int64_t queried_tokens() const { return queried_tokens_; }
  double hit_rate() const { return queried_tokens_ ? double(hit_tokens_) / double(queried_tokens_) : 0.0; }
  // Every page the cache holds a reference on (for checks and tests), in tree order.
  std::vector<int32_t> all_cached_pages() const;

 private:
  using PageKey = std::vector<int32_t>;  // the tokens of one page: a child's first page selects it

  Node* split(Node* node, size_t keep_pages);
  void touch(Node* node);
  void add_lock(Node* node, int delta);
  void delete_leaf(Node* leaf);

  PagePool& pool_;
  int32_t page_size_;
  std::unique_ptr<Node> root_;
  uint64_t clock_ = 0;    // logical time: deterministic LRU order
  uint64_t next_id_ = 0;  // creation order, the LRU tie-break
  int32_t cached_pages_ = 0;
  int32_t locked_pages_ = 0;
  int64_t hit_tokens_ = 0;
  int64_t queried_tokens_ = 0;
};

struct RadixCache::Node {
  std::vector<int32_t> tokens;  // the edge into this node: a whole number of pages
  std::vector<int32_t> pages;   // tokens.size() / page_size pool pages
  Node* parent = nullptr;
  std::map<PageKey, std::unique_ptr<Node>> children;
  int32_t lock_ref = 0;
  uint64_t last_access = 0;
  uint64_t id = 0;
};

}  // namespace ds::runtime
