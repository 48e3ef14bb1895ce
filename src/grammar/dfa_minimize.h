// Minimization of one rule's automaton (pda.cpp calls it after the subset construction). States
// that accept the same strings with the same calls become one: fewer states means fewer per-node
// token walks over the vocabulary (token_masks.h), each a near-full trie walk for text-like rules.
// The subset construction leaves many such twins, e.g. one per UTF-8 lead-byte branch of a
// character class, or per copy of a bounded repetition.
#pragma once
#include <cstdint>

#include "grammar/pda.h"

namespace ds::grammar {

// Minimizes the rule whose nodes are pda.nodes[first_node, end) and whose edges are the tails of
// pda.byte_edges / pda.ref_edges from first_byte_edge / first_ref_edge (the last rule added).
// The start state stays first; the states keep the order of their first member.
void minimize_last_rule(Pda& pda, uint32_t first_node, uint32_t first_byte_edge, uint32_t first_ref_edge);

}  // namespace ds::grammar
