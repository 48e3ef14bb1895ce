// The cache-aware policy's picture of one worker's prefix cache (SGLang router's "approximate tree"):
// a radix tree over the text of the requests sent to that worker. It never sees the worker's real
// cache, so it only approximates it: what was sent recently is probably still cached. Sizes and
// matches count bytes of the UTF-8 text (sglang_router counts characters).
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

namespace ds::router {

class ApproxTree {
 public:
  ApproxTree();
  ~ApproxTree();
  ApproxTree(ApproxTree&&) noexcept;
  ApproxTree& operator=(ApproxTree&&) noexcept;

  // Adds `text` and marks its whole path as used now.
  void insert(std::string_view text);
  // The length of the longest prefix of `text` the tree holds.
  size_t match(std::string_view text) const;
  // Bytes held: the sum of the edge lengths (what max_tree_size bounds).
  size_t size() const { return size_; }
  // Drops least recently used leaves until size() <= max_size.
  void evict_to(size_t max_size);

 private:
  struct Node {
    std::string edge;  // the bytes on the edge from the parent
    std::map<unsigned char, std::unique_ptr<Node>> children;
    Node* parent = nullptr;
    uint64_t last_used = 0;
  };
  std::unique_ptr<Node> root_;
  size_t size_ = 0;
  uint64_t clock_ = 0;  // a logical clock: insertions, not wall time, order the uses
};

}  // namespace ds::router
