// The vocabulary as the grammar sees it: each token's bytes (byte-level BPE decoded; empty for
// special and undefined tokens, which a grammar never produces) in a byte trie, so that a mask is
// computed by one walk that shares every common prefix. Built once per tokenizer.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ds::tok {
class Tokenizer;
}

namespace ds::grammar {

// Nodes are numbered in preorder: a node's subtree is the nodes [id, subtree_end), so a walk can
// run over the array in order and skip a subtree in one step.
struct TrieNode {
  uint32_t first_child = 0;   // 0: none (the root is never a child)
  uint32_t next_sibling = 0;  // children are chained in ascending byte order
  uint32_t subtree_end = 0;
  uint32_t tok_lo = 0, tok_hi = 0;  // tokens of this subtree: dfs_tokens[tok_lo, tok_hi)
  uint32_t own_hi = 0;              // tokens ending exactly here: dfs_tokens[tok_lo, own_hi)
  uint8_t byte = 0;
};

class TokenTable {
 public:
  // stop_ids: tokens that end the output (allowed exactly when the grammar is complete).
  static std::shared_ptr<const TokenTable> from_bytes(std::vector<std::string> token_bytes, std::vector<int32_t> stop_ids);
  static std::shared_ptr<const TokenTable> from_tokenizer(const tok::Tokenizer& tok, std::vector<int32_t> stop_ids);

  int32_t vocab_size() const { return int32_t(bytes_.size()); }
  const std::string& bytes(int32_t id) const { return bytes_[id]; }
  const std::vector<int32_t>& stop_ids() const { return stop_ids_; }
  bool is_stop(int32_t id) const;
  const std::vector<TrieNode>& trie() const { return trie_; }
  // Token ids in trie (lexicographic byte) order; a token's rank is its index here.
  const std::vector<int32_t>& dfs_tokens() const { return dfs_tokens_; }
  // Length of the common prefix of the tokens at ranks r-1 and r (0 for r = 0).
  uint32_t lcp(uint32_t rank) const { return lcp_[rank]; }

 private:
  std::vector<std::string> bytes_;
  std::vector<int32_t> stop_ids_;
  std::vector<TrieNode> trie_;
  std::vector<int32_t> dfs_tokens_;
  std::vector<uint32_t> lcp_;
};

// A set of token ids as 64-bit words (bit i of word i/64), the layout the sampler takes.
struct TokenBitmask {
  std::vector<uint64_t> words;
  void reset(int32_t vocab) { words.assign((size_t(vocab) + 63) / 64, 0); }
  void set(int32_t id) { words[size_t(id) >> 6] |= uint64_t(1) << (id & 63); }
  bool test(int32_t id) const { return (words[size_t(id) >> 6] >> (id & 63)) & 1; }
  size_t count() const;
  std::vector<int32_t> ids() const;
};

}  // namespace ds::grammar
