// A Grammar compiled for matching: one deterministic automaton per rule over bytes and rule
// references (a pushdown automaton once the references are read as calls). Node ids are global.
// A byte edge moves within the rule; a reference edge calls the rule and, when that rule reaches an
// accepting node, returns to the edge's target. Left recursion is refused at compile time: the
// matcher (stack_set.h) explores calls eagerly and would not terminate on it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "grammar/expr.h"

namespace ds::grammar {

struct ByteEdge {
  uint8_t lo, hi;
  uint32_t target;
};
struct RefEdge {
  uint32_t rule;
  uint32_t target;
};

struct PdaNode {
  uint32_t rule = 0;
  bool accepting = false;
  bool can_end = false;  // an accepting node is reachable by calls to nullable rules only
  uint32_t byte_begin = 0, byte_end = 0;  // ranges into Pda::byte_edges, sorted by lo, disjoint
  uint32_t ref_begin = 0, ref_end = 0;    // ranges into Pda::ref_edges
};

struct Pda {
  std::vector<std::string> rule_names;
  std::vector<uint32_t> rule_start;   // start node of each rule
  std::vector<ByteSet> rule_follow;   // bytes that may come right after the rule ends (within the grammar)
  std::vector<bool> rule_follow_end;  // the rule may end the whole input
  std::vector<PdaNode> nodes;
  std::vector<ByteEdge> byte_edges;
  std::vector<RefEdge> ref_edges;
  uint32_t root = 0;

  // Target of node's byte edge for b, or UINT32_MAX.
  uint32_t step(uint32_t node, uint8_t b) const {
    const PdaNode& n = nodes[node];
    for (uint32_t i = n.byte_begin; i < n.byte_end; ++i) {
      const ByteEdge& e = byte_edges[i];
      if (b < e.lo) break;
      if (b <= e.hi) return e.target;
    }
    return UINT32_MAX;
  }
  bool has_edges(uint32_t node) const {
    const PdaNode& n = nodes[node];
    return n.byte_begin != n.byte_end || n.ref_begin != n.ref_end;
  }
};

struct PdaLimits {
  size_t max_states_per_rule = 50000;  // a rule whose automaton grows beyond this is refused
  size_t max_repeat_copies = 20000;    // bounded repetitions are unrolled
  bool minimize = true;                // merge equivalent states of each rule (dfa_minimize.h)
};

// Throws ds::Error naming the rule: undefined rules, left recursion, an automaton too large.
Pda compile_pda(const Grammar& g, const PdaLimits& limits = {});

// A canonical text of the sub-grammar reachable from `rule` (its automaton and those it calls,
// renumbered in visit order): equal keys mean equal languages and equal per-node token sets, so
// precomputed masks can be shared between grammars (token_masks.h). Empty when the sub-grammar
// is larger than max_words (big rules are rarely shared, and their keys would cost more).
std::string structural_key(const Pda& pda, uint32_t rule, size_t max_words = 1 << 16);

}  // namespace ds::grammar
