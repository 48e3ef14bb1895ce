// A grammar ready to match against one vocabulary: the automaton plus the per-node token sets,
// computed on first use of a node and shared with other grammars through a NodeTokensCache.
// Immutable apart from that lazily filled cache; safe to share between requests and threads.
#pragma once
#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "grammar/pda.h"
#include "grammar/token_masks.h"
#include "grammar/token_table.h"

namespace ds::grammar {

class CompiledGrammar {
 public:
  CompiledGrammar(Pda pda, std::shared_ptr<const TokenTable> vocab, std::shared_ptr<NodeTokensCache> shared);

  const Pda& pda() const { return pda_; }
  const TokenTable& vocab() const { return *vocab_; }
  const std::shared_ptr<const TokenTable>& vocab_ptr() const { return vocab_; }
  const NodeTokens& node_tokens(uint32_t node) const;
  // Computes the token sets of every node that reads a byte now (so that the first masks are not
  // slower; nodes that only call are never asked for).
  void warm_up() const;

 private:
  Pda pda_;
  std::shared_ptr<const TokenTable> vocab_;
  std::shared_ptr<NodeTokensCache> shared_;
  mutable std::mutex mu_;
  mutable std::vector<std::shared_ptr<const NodeTokens>> nodes_;
  mutable std::unique_ptr<std::atomic<const NodeTokens*>[]> ready_;
  mutable std::vector<std::optional<std::string>> rule_keys_;  // empty string: not shared
};

}  // namespace ds::grammar
