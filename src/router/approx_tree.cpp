#include "router/approx_tree.h"

#include <queue>
#include <utility>
#include <vector>

namespace ds::router {

ApproxTree::ApproxTree() : root_(std::make_unique<Node>()) {}
ApproxTree::~ApproxTree() = default;
ApproxTree::ApproxTree(ApproxTree&&) noexcept = default;
ApproxTree& ApproxTree::operator=(ApproxTree&&) noexcept = default;

namespace {
size_t common_prefix(std::string_view a, std::string_view b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}
}  // namespace

void ApproxTree::insert(std::string_view text) {
  const uint64_t now = ++clock_;
  Node* node = root_.get();
  node->last_used = now;
  while (!text.empty()) {
    auto it = node->children.find(static_cast<unsigned char>(text[0]));
    if (it == node->children.end()) {
      auto leaf = std::make_unique<Node>();
      leaf->edge = std::string(text);
      leaf->parent = node;
      leaf->last_used = now;
      size_ += text.size();
      node->children.emplace(static_cast<unsigned char>(text[0]), std::move(leaf));
      return;
    }
    Node* child = it->second.get();
    const size_t shared = common_prefix(child->edge, text);
    if (shared < child->edge.size()) {
      // Split the edge: a new inner node holds the shared part, the old child keeps the rest.
      auto inner = std::make_unique<Node>();
      inner->edge = child->edge.substr(0, shared);
      inner->parent = node;
      inner->last_used = child->last_used;
      std::unique_ptr<Node> old = std::move(it->second);
      old->edge.erase(0, shared);
      old->parent = inner.get();
      inner->children.emplace(static_cast<unsigned char>(old->edge[0]), std::move(old));
      it->second = std::move(inner);
      child = it->second.get();
    }
    child->last_used = now;
    node = child;
    text.remove_prefix(shared);
  }
}

size_t ApproxTree::match(std::string_view text) const {
  const Node* node = root_.get();
  size_t matched = 0;
  while (!text.empty()) {
    auto it = node->children.find(static_cast<unsigned char>(text[0]));
    if (it == node->children.end()) break;
    const size_t shared = common_prefix(it->second->edge, text);
    matched += shared;
    if (shared < it->second->edge.size()) break;
    text.remove_prefix(shared);
    node = it->second.get();
  }
  return matched;
}

void ApproxTree::evict_to(size_t max_size) {
  if (size_ <= max_size) return;
  using Entry = std::pair<uint64_t, Node*>;  // oldest use first
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> leaves;
  std::vector<Node*> stack{root_.get()};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    if (n != root_.get() && n->children.empty()) leaves.emplace(n->last_used, n);
    for (auto& [_, c] : n->children) stack.push_back(c.get());
  }
  while (size_ > max_size && !leaves.empty()) {
    Node* leaf = leaves.top().second;
    leaves.pop();
    Node* parent = leaf->parent;
    size_ -= leaf->edge.size();
    parent->children.erase(static_cast<unsigned char>(leaf->edge[0]));
    if (parent != root_.get() && parent->children.empty()) leaves.emplace(parent->last_used, parent);
  }
}

}  // namespace ds::router
