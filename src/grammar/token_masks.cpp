#include "grammar/token_masks.h"

#include <algorithm>

#include "grammar/stack_set.h"

namespace ds::grammar {

namespace {

// Accepted tokens as runs of ranks (a walk finds them in ascending rank order, mostly in long runs).
struct RankRuns {
  std::vector<std::pair<uint32_t, uint32_t>> runs;  // [lo, hi)
  size_t count = 0;
  void add(uint32_t lo, uint32_t hi) {
    if (lo == hi) return;
    count += hi - lo;
    if (!runs.empty() && runs.back().second == lo) {
      runs.back().second = hi;
    } else {
      runs.emplace_back(lo, hi);
    }
  }
};

struct Walk {
  const Pda& pda;
  const TokenTable& vocab;
  const ByteSet follow;
  RankRuns accepted;
  std::vector<uint32_t> uncertain;

  void own_tokens(const TrieNode& c) { accepted.add(c.tok_lo, c.own_hi); }
  void subtree_uncertain(const TrieNode& c) {
    for (uint32_t r = c.tok_lo; r < c.tok_hi; ++r) uncertain.push_back(r);
  }

  // A rule that calls no other: the state is one automaton node. One pass over the trie in
  // preorder (its array order), skipping the subtrees the automaton rejects; each state's byte
  // edges are spread into a 256-entry row the first time the walk reaches it.
  void flat(uint32_t start) {
    const auto& trie = vocab.trie();
    const uint32_t rule = pda.nodes[start].rule;
    const uint32_t base = pda.rule_start[rule];
    const uint32_t rule_end = rule + 1 < pda.rule_start.size() ? pda.rule_start[rule + 1] : uint32_t(pda.nodes.size());
    std::vector<int32_t> row_of(rule_end - base, -1);
    std::vector<uint32_t> rows;  // 256 targets per state (UINT32_MAX: no edge)
    auto row = [&](uint32_t state) -> const uint32_t* {
      int32_t& r = row_of[state - base];
      if (r < 0) {
        r = int32_t(rows.size() / 256);
        rows.resize(rows.size() + 256, UINT32_MAX);
        const PdaNode& n = pda.nodes[state];
        for (uint32_t e = n.byte_begin; e < n.byte_end; ++e)
          std::fill(rows.begin() + r * 256 + pda.byte_edges[e].lo, rows.begin() + r * 256 + pda.byte_edges[e].hi + 1,
                    pda.byte_edges[e].target);
      }
      return &rows[size_t(r) * 256];
    };
    struct Frame {
      uint32_t end;    // the trie node's subtree end
      uint32_t state;  // the automaton's state after the node's bytes
      bool flag;       // the rule could have returned before a byte now rejected: uncertain
      bool exits;      // the rule can return here (depth >= 1 and an accepting state)
    };
    std::vector<Frame> stack{{trie[0].subtree_end, start, false, false}};
    for (uint32_t i = 1; i < trie.size();) {
      while (i >= stack.back().end) stack.pop_back();
      const Frame& parent = stack.back();
      const TrieNode& c = trie[i];
      const bool fl = parent.flag || (parent.exits && follow[c.byte]);
      const uint32_t t = row(parent.state)[c.byte];
      if (t == UINT32_MAX) {
        if (fl) subtree_uncertain(c);
        i = c.subtree_end;
        continue;
      }
      own_tokens(c);
      if (c.first_child) stack.push_back(Frame{c.subtree_end, t, fl, pda.nodes[t].accepting});
      ++i;
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
    w.flat(node);
  } else {
    FrameArena arena;
    StackStepper st(pda, arena);
    Kernel k = st.start_kernel(node, kLocalBottom);
    w.general(st, 0, 0, k, false);
  }
  NodeTokens out;
  out.uncertain = std::move(w.uncertain);  // both walks find ranks in ascending order
  const auto& ids = vocab.dfs_tokens();
  if (w.accepted.count * 32 > size_t(vocab.vocab_size())) {
    out.dense = true;
    out.accepted_bits.reset(vocab.vocab_size());
    for (auto [lo, hi] : w.accepted.runs)
      for (uint32_t r = lo; r < hi; ++r) out.accepted_bits.set(ids[r]);
  } else {
    out.accepted_ids.reserve(w.accepted.count);
    for (auto [lo, hi] : w.accepted.runs) out.accepted_ids.insert(out.accepted_ids.end(), ids.begin() + lo, ids.begin() + hi);
    std::sort(out.accepted_ids.begin(), out.accepted_ids.end());
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
