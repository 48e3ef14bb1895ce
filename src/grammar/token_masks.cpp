#include "grammar/token_masks.h"

#include <algorithm>

#include "grammar/stack_set.h"

namespace ds::grammar {

namespace {

struct Walk {
  const Pda& pda;
  const TokenTable& vocab;
  const ByteSet follow;
  std::vector<int32_t> accepted;
  std::vector<uint32_t> uncertain;

  void own_tokens(const TrieNode& c) {
    for (uint32_t r = c.tok_lo; r < c.own_hi; ++r) accepted.push_back(vocab.dfs_tokens()[r]);
  }
  void subtree_uncertain(const TrieNode& c) {
    for (uint32_t r = c.tok_lo; r < c.tok_hi; ++r) uncertain.push_back(r);
  }

  // A rule that calls no other: the state is one automaton node.
  void flat(uint32_t tn, uint32_t depth, uint32_t state, bool flag) {
    const auto& trie = vocab.trie();
    const bool exits = depth >= 1 && pda.nodes[state].accepting;
    for (uint32_t c = trie[tn].first_child; c != 0; c = trie[c].next_sibling) {
      const TrieNode& child = trie[c];
      const bool fl = flag || (exits && follow[child.byte]);
      const uint32_t t = pda.step(state, child.byte);
      if (t == UINT32_MAX) {
        if (fl) subtree_uncertain(child);
        continue;
      }
      own_tokens(child);
      flat(c, depth + 1, t, fl);
    }
  }

  // Any rule: the state is a kernel over a local stack (kLocalBottom below the rule).
  void general(StackStepper& st, uint32_t tn, uint32_t depth, const Kernel& k, bool flag) {
    const auto& trie = vocab.trie();
    bool exits = false;
    const std::vector<uint32_t> cl = st.closure(k, &exits);
    exits = exits && depth >= 1;
    Kernel next;
    for (uint32_t c = trie[tn].first_child; c != 0; c = trie[c].next_sibling) {
      const TrieNode& child = trie[c];
      const bool fl = flag || (exits && follow[child.byte]);
      st.advance_closure(cl, child.byte, next);
      if (next.empty()) {
        if (fl) subtree_uncertain(child);
        continue;
      }
      own_tokens(child);
      general(st, c, depth + 1, next, fl);
    }
  }
};

bool rule_is_flat(const Pda& pda, uint32_t rule) {
  const uint32_t begin = pda.rule_start[rule];
  const uint32_t end = rule + 1 < pda.rule_start.size() ? pda.rule_start[rule + 1] : uint32_t(pda.nodes.size());
  for (uint32_t n = begin; n < end; ++n)
    if (pda.nodes[n].ref_begin != pda.nodes[n].ref_end) return false;
  return true;
}

}  // namespace

NodeTokens precompute_node_tokens(const Pda& pda, const TokenTable& vocab, uint32_t node) {
  const uint32_t rule = pda.nodes[node].rule;
  Walk w{pda, vocab, pda.rule_follow[rule], {}, {}};
  if (rule_is_flat(pda, rule)) {
    w.flat(0, 0, node, false);
  } else {
    FrameArena arena;
    StackStepper st(pda, arena);
    Kernel k = st.start_kernel(node, kLocalBottom);
    w.general(st, 0, 0, k, false);
  }
  NodeTokens out;
  std::sort(w.uncertain.begin(), w.uncertain.end());
  out.uncertain = std::move(w.uncertain);
  if (w.accepted.size() * 32 > size_t(vocab.vocab_size())) {
    out.dense = true;
    out.accepted_bits.reset(vocab.vocab_size());
    for (int32_t id : w.accepted) out.accepted_bits.set(id);
  } else {
    std::sort(w.accepted.begin(), w.accepted.end());
    out.accepted_ids = std::move(w.accepted);
  }
  return out;
}

std::shared_ptr<const NodeTokens> NodeTokensCache::find(const std::string& key) const {
  std::lock_guard lock(mu_);
  auto it = map_.find(key);
  return it == map_.end() ? nullptr : it->second;
}

void NodeTokensCache::insert(const std::string& key, std::shared_ptr<const NodeTokens> value) {
  std::lock_guard lock(mu_);
  if (map_.size() >= max_entries_) map_.clear();  // rare: many distinct grammars; start over
  map_.emplace(key, std::move(value));
}

size_t NodeTokensCache::size() const {
  std::lock_guard lock(mu_);
  return map_.size();
}

}  // namespace ds::grammar
