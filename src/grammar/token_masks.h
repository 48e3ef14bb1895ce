// Token sets precomputed per automaton node (the split xgrammar calls context-independent vs
// context-dependent tokens). Walking the vocabulary trie from a node of rule R alone, a token is
//  - accepted: its bytes can all be read without R returning (true whatever called R);
//  - uncertain: R can return after at least one of its bytes, and the next byte can follow R
//    somewhere in the grammar (Pda::rule_follow); the matcher checks these against the full stack;
//  - rejected otherwise. Tokens that would need R to return before their first byte are the
//    caller's business: the matcher keeps the callers in the kernel (StackStepper::add_returns).
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "grammar/pda.h"
#include "grammar/token_table.h"

namespace ds::grammar {

struct NodeTokens {
  bool dense = false;
  TokenBitmask accepted_bits;          // when dense
  std::vector<int32_t> accepted_ids;   // when sparse
  std::vector<uint32_t> uncertain;     // token ranks (TokenTable::dfs_tokens), ascending
  size_t accepted_count() const { return dense ? accepted_bits.count() : accepted_ids.size(); }
};

NodeTokens precompute_node_tokens(const Pda& pda, const TokenTable& vocab, uint32_t node);

// Shared between grammars compiled for one vocabulary: node token sets keyed by the node's place in
// the structure of its rule (pda.h structural_key) and the rule's follow set. Thread-safe.
class NodeTokensCache {
 public:
  explicit NodeTokensCache(size_t max_entries = 4096) : max_entries_(max_entries) {}
  std::shared_ptr<const NodeTokens> find(const std::string& key) const;
  void insert(const std::string& key, std::shared_ptr<const NodeTokens> value);
  size_t size() const;

 private:
  mutable std::mutex mu_;
  size_t max_entries_;
  std::unordered_map<std::string, std::shared_ptr<const NodeTokens>> map_;
};

}  // namespace ds::grammar
