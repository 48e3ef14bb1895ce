#include "runtime/radix_cache.h"

#include <algorithm>
#include <functional>
#include <queue>
#include <tuple>

#include "util/error.h"

namespace ds::runtime {

namespace {

// Whole pages equal at the start of `a` and `b` (page-aligned spans).
size_t matching_pages(std::span<const int32_t> a, std::span<const int32_t> b, int32_t page_size) {
  size_t pages = std::min(a.size(), b.size()) / page_size;
  for (size_t p = 0; p < pages; ++p) {
    auto pa = a.subspan(p * page_size, page_size);
    auto pb = b.subspan(p * page_size, page_size);
    if (!std::equal(pa.begin(), pa.end(), pb.begin())) return p;
  }
  return pages;
}

}  // namespace

RadixCache::RadixCache(PagePool& pool) : pool_(pool), page_size_(pool.page_size()), root_(new Node) {}

// Iterative teardown: a long chain of nodes must not recurse through unique_ptr destructors. The
// pool is not touched (it may already be gone); call reset() first to give pages back.
RadixCache::~RadixCache() {
  std::vector<std::unique_ptr<Node>> pending;
  pending.push_back(std::move(root_));
  while (!pending.empty()) {
    std::unique_ptr<Node> n = std::move(pending.back());
    pending.pop_back();
    for (auto& [key, child] : n->children) pending.push_back(std::move(child));
  }
}

void RadixCache::touch(Node* node) { node->last_access = clock_; }

// Cuts `node`'s edge after keep_pages pages: a new node takes the front part and becomes the
// parent of `node`. It inherits the lock count, since every lock through `node` passes through it.
RadixCache::Node* RadixCache::split(Node* node, size_t keep_pages) {
  const size_t keep_tokens = keep_pages * page_size_;
  auto mid = std::make_unique<Node>();
  mid->tokens.assign(node->tokens.begin(), node->tokens.begin() + keep_tokens);
  mid->pages.assign(node->pages.begin(), node->pages.begin() + keep_pages);
  mid->parent = node->parent;
  mid->lock_ref = node->lock_ref;
  mid->last_access = node->last_access;
  mid->id = next_id_++;
  node->tokens.erase(node->tokens.begin(), node->tokens.begin() + keep_tokens);
  node->pages.erase(node->pages.begin(), node->pages.begin() + keep_pages);
  node->parent = mid.get();

  PageKey key(mid->tokens.begin(), mid->tokens.begin() + page_size_);
  auto& slot = mid->parent->children.at(key);
  std::unique_ptr<Node> owned = std::move(slot);  // == node
  PageKey child_key(node->tokens.begin(), node->tokens.begin() + page_size_);
  mid->children.emplace(std::move(child_key), std::move(owned));
  Node* result = mid.get();
  slot = std::move(mid);
  return result;
}

RadixCache::MatchResult RadixCache::match_prefix(std::span<const int32_t> tokens) {
  ++clock_;
  MatchResult r;
  queried_tokens_ += static_cast<int64_t>(tokens.size());
  const size_t full = tokens.size() / page_size_ * page_size_;
  Node* node = root_.get();
  touch(node);
  size_t pos = 0;
  while (pos < full) {
    PageKey key(tokens.begin() + pos, tokens.begin() + pos + page_size_);
    auto it = node->children.find(key);
    if (it == node->children.end()) break;
    Node* child = it->second.get();
    size_t n = matching_pages(child->tokens, tokens.subspan(pos, full - pos), page_size_);
    const bool partial = n < child->pages.size();
    if (partial) child = split(child, n);  // so the returned node ends exactly at the match
    r.pages.insert(r.pages.end(), child->pages.begin(), child->pages.end());
    pos += n * page_size_;
    node = child;
    touch(node);
    if (partial) break;
  }
  r.num_tokens = static_cast<int64_t>(pos);
  r.node = node;
  hit_tokens_ += r.num_tokens;
  return r;
}

int64_t RadixCache::cached_prefix_tokens(std::span<const int32_t> tokens) const {
  const size_t full = tokens.size() / page_size_ * page_size_;
  const Node* node = root_.get();
  size_t pos = 0;
  while (pos < full) {
    PageKey key(tokens.begin() + pos, tokens.begin() + pos + page_size_);
    auto it = node->children.find(key);
    if (it == node->children.end()) break;
    const Node* child = it->second.get();
    const size_t n = matching_pages(child->tokens, tokens.subspan(pos, full - pos), page_size_);
    pos += n * page_size_;
    if (n < child->pages.size()) break;
    node = child;
  }
  return static_cast<int64_t>(pos);
}

RadixCache::InsertResult RadixCache::insert(std::span<const int32_t> tokens, std::span<const int32_t> pages) {
  const size_t num_pages = tokens.size() / page_size_;
  DS_CHECK(pages.size() >= num_pages, "RadixCache::insert: {} tokens need {} whole pages, got {} pages",
           tokens.size(), num_pages, pages.size());
  ++clock_;
  InsertResult r;
  Node* node = root_.get();
  touch(node);
  size_t i = 0;  // page index
  while (i < num_pages) {
    const auto rest = tokens.subspan(i * page_size_, (num_pages - i) * page_size_);
    PageKey key(rest.begin(), rest.begin() + page_size_);
    auto it = node->children.find(key);
    if (it == node->children.end()) {
      // The new tail: validate every page before taking any reference.
      std::vector<int32_t> fresh(pages.begin() + i, pages.begin() + num_pages);
      pool_.retain(fresh);
      auto leaf = std::make_unique<Node>();
      leaf->tokens.assign(rest.begin(), rest.end());
      leaf->pages = fresh;
      leaf->parent = node;
      leaf->last_access = clock_;
      leaf->id = next_id_++;
      cached_pages_ += static_cast<int32_t>(fresh.size());
      r.pages.insert(r.pages.end(), fresh.begin(), fresh.end());
      node = leaf.get();
      node->parent->children.emplace(std::move(key), std::move(leaf));
      break;
    }
    Node* child = it->second.get();
    size_t n = matching_pages(child->tokens, rest, page_size_);
    if (n < child->pages.size()) child = split(child, n);
    for (size_t k = 0; k < n; ++k) {
      if (pages[i + k] != child->pages[k]) r.duplicates.push_back(pages[i + k]);
      r.pages.push_back(child->pages[k]);
    }
    r.already_cached_tokens += static_cast<int64_t>(n * page_size_);
    i += n;
    node = child;
    touch(node);
  }
  r.node = node;
  return r;
}

void RadixCache::add_lock(Node* node, int delta) {
  for (Node* n = node; n != root_.get(); n = n->parent) {
    const int32_t pages = static_cast<int32_t>(n->pages.size());
    if (delta > 0 && n->lock_ref == 0) locked_pages_ += pages;
    n->lock_ref += delta;
    if (delta < 0 && n->lock_ref == 0) locked_pages_ -= pages;
  }
}

void RadixCache::lock(Node* node) {
  DS_CHECK(node != nullptr, "RadixCache::lock: null node");
  add_lock(node, +1);
}

void RadixCache::unlock(Node* node) {
  DS_CHECK(node != nullptr, "RadixCache::unlock: null node");
  DS_CHECK(node == root_.get() || node->lock_ref > 0, "RadixCache::unlock: node is not locked");
  add_lock(node, -1);
}

void RadixCache::delete_leaf(Node* leaf) {
  Node* parent = leaf->parent;
  pool_.release(leaf->pages);
  cached_pages_ -= static_cast<int32_t>(leaf->pages.size());
  PageKey key(leaf->tokens.begin(), leaf->tokens.begin() + page_size_);
  parent->children.erase(key);  // destroys leaf
}

std::vector<int32_t> RadixCache::evict(int32_t num_pages) {
  using Entry = std::tuple<uint64_t, uint64_t, Node*>;  // (last_access, id, node): oldest first
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> heap;
  std::vector<Node*> stack{root_.get()};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    if (n != root_.get() && n->children.empty() && n->lock_ref == 0) heap.emplace(n->last_access, n->id, n);
    for (auto& [key, child] : n->children) stack.push_back(child.get());
  }
  std::vector<int32_t> dropped;
  while (static_cast<int32_t>(dropped.size()) < num_pages && !heap.empty()) {
    Node* leaf = std::get<2>(heap.top());
    heap.pop();
    Node* parent = leaf->parent;
    dropped.insert(dropped.end(), leaf->pages.begin(), leaf->pages.end());
    delete_leaf(leaf);
    // A parent left without children becomes an evictable leaf in its turn.
    if (parent != root_.get() && parent->children.empty() && parent->lock_ref == 0)
      heap.emplace(parent->last_access, parent->id, parent);
  }
  return dropped;
}

void RadixCache::reset() {
  DS_CHECK(locked_pages_ == 0, "RadixCache::reset: {} cached pages are locked by running requests", locked_pages_);
  pool_.release(all_cached_pages());
  std::vector<std::unique_ptr<Node>> pending;
  for (auto& [key, child] : root_->children) pending.push_back(std::move(child));
  root_->children.clear();
  while (!pending.empty()) {
    std::unique_ptr<Node> n = std::move(pending.back());
    pending.pop_back();
    for (auto& [key, child] : n->children) pending.push_back(std::move(child));
  }
  cached_pages_ = 0;
}

std::vector<int32_t> RadixCache::all_cached_pages() const {
  std::vector<int32_t> out;
  std::vector<const Node*> stack{root_.get()};
  while (!stack.empty()) {
    const Node* n = stack.back();
    stack.pop_back();
    out.insert(out.end(), n->pages.begin(), n->pages.end());
    for (auto& [key, child] : n->children) stack.push_back(child.get());
  }
  return out;
}

}  // namespace ds::runtime
