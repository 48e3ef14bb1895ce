#include "grammar/dfa_minimize.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace ds::grammar {

namespace {

// The states 0..n-1 in blocks; a block is a range of `elems`, its marked states at its front.
struct Partition {
  std::vector<uint32_t> elems, loc, block_of;
  std::vector<uint32_t> first, end, mid;  // per block: [first, end) in elems, [first, mid) marked

  uint32_t size(uint32_t b) const { return end[b] - first[b]; }
  uint32_t add_block(uint32_t f, uint32_t e) {
    first.push_back(f), end.push_back(e), mid.push_back(f);
    return uint32_t(first.size() - 1);
  }
  void mark(uint32_t s) {
    const uint32_t b = block_of[s], pos = loc[s];
    if (pos < mid[b]) return;
    const uint32_t other = elems[mid[b]];
    std::swap(elems[pos], elems[mid[b]]);
    loc[other] = pos;
    loc[s] = mid[b]++;
  }
  // Splits block b into its marked and its other states; the marked ones form the new block.
  // Returns the new block, or -1 when all of b was marked. Clears b's marks.
  int64_t split(uint32_t b) {
    if (mid[b] == end[b]) {
      mid[b] = first[b];
      return -1;
    }
    const uint32_t nb = add_block(first[b], mid[b]);
    first[b] = mid[b];
    for (uint32_t i = first[nb]; i < end[nb]; ++i) block_of[elems[i]] = nb;
    return nb;
  }
};

}  // namespace

// Partition refinement with blocks as splitters (Hopcroft's, adapted to a partial transition
// function: every initial block is a splitter, so "no edge" needs no explicit sink state; then
// after a split only the smaller half is added, unless the block is still waiting).
void minimize_last_rule(Pda& pda, uint32_t first_node, uint32_t first_byte_edge, uint32_t first_ref_edge) {
  const uint32_t n = uint32_t(pda.nodes.size()) - first_node;
  if (n <= 1) return;
  // Bytes that no edge of the rule tells apart are one symbol: the rule's ranges cut 0..255 into
  // intervals, and an edge reads the intervals it covers (far fewer than its bytes).
  std::vector<uint32_t> interval_of(257, 0);
  for (uint32_t e = first_byte_edge; e < pda.byte_edges.size(); ++e)
    interval_of[pda.byte_edges[e].lo] = interval_of[pda.byte_edges[e].hi + 1u] = 1;
  for (uint32_t b = 1; b < 257; ++b) interval_of[b] += interval_of[b - 1];
  // Transitions into each state: (symbol, source), symbols the intervals and 256 + rule for calls.
  std::vector<uint32_t> in_count(n + 1, 0);
  auto for_each_transition = [&](auto&& fn) {
    for (uint32_t s = 0; s < n; ++s) {
      const PdaNode& node = pda.nodes[first_node + s];
      for (uint32_t e = node.byte_begin; e < node.byte_end; ++e)
        for (uint32_t c = interval_of[pda.byte_edges[e].lo]; c <= interval_of[pda.byte_edges[e].hi]; ++c)
          fn(s, c, pda.byte_edges[e].target - first_node);
      for (uint32_t e = node.ref_begin; e < node.ref_end; ++e)
        fn(s, 256 + pda.ref_edges[e].rule, pda.ref_edges[e].target - first_node);
    }
  };
  for_each_transition([&](uint32_t, uint32_t, uint32_t t) { ++in_count[t + 1]; });
  for (uint32_t s = 0; s < n; ++s) in_count[s + 1] += in_count[s];
  std::vector<std::pair<uint32_t, uint32_t>> in_list(in_count[n]);
  {
    std::vector<uint32_t> fill(in_count.begin(), in_count.end() - 1);
    for_each_transition([&](uint32_t s, uint32_t sym, uint32_t t) { in_list[fill[t]++] = {sym, s}; });
  }

  Partition p;
  p.elems.resize(n), p.loc.resize(n), p.block_of.resize(n);
  uint32_t k = 0;
  for (int acc = 0; acc < 2; ++acc) {
    const uint32_t begin = k;
    for (uint32_t s = 0; s < n; ++s)
      if (pda.nodes[first_node + s].accepting == bool(acc)) p.elems[k] = s, p.loc[s] = k++;
    if (k > begin) {
      const uint32_t b = p.add_block(begin, k);
      for (uint32_t i = begin; i < k; ++i) p.block_of[p.elems[i]] = b;
    }
  }
  std::vector<uint32_t> work;
  std::vector<char> waiting;
  for (uint32_t b = 0; b < p.first.size(); ++b) work.push_back(b), waiting.push_back(1);
  std::vector<std::pair<uint32_t, uint32_t>> incoming;
  std::vector<uint32_t> touched;
  while (!work.empty()) {
    const uint32_t splitter = work.back();
    work.pop_back();
    waiting[splitter] = 0;
    incoming.clear();
    for (uint32_t i = p.first[splitter]; i < p.end[splitter]; ++i) {
      const uint32_t s = p.elems[i];
      incoming.insert(incoming.end(), in_list.begin() + in_count[s], in_list.begin() + in_count[s + 1]);
    }
    std::sort(incoming.begin(), incoming.end());
    for (size_t a = 0; a < incoming.size();) {
      size_t z = a;
      touched.clear();
      for (; z < incoming.size() && incoming[z].first == incoming[a].first; ++z) {
        const uint32_t src = incoming[z].second, b = p.block_of[src];
        if (p.mid[b] == p.first[b]) touched.push_back(b);
        p.mark(src);
      }
      for (uint32_t b : touched) {
        const int64_t nb = p.split(b);
        if (nb < 0) continue;
        waiting.push_back(0);
        const uint32_t add = waiting[b] || p.size(uint32_t(nb)) <= p.size(b) ? uint32_t(nb) : b;
        work.push_back(add);
        waiting[add] = 1;
      }
      a = z;
    }
  }
  if (p.first.size() == n) return;  // already minimal

  // One state per block, numbered by their first member (the start state stays first).
  std::vector<int64_t> id_of_block(p.first.size(), -1);
  std::vector<uint32_t> rep;
  for (uint32_t s = 0; s < n; ++s)
    if (id_of_block[p.block_of[s]] < 0) id_of_block[p.block_of[s]] = int64_t(rep.size()), rep.push_back(s);
  auto new_id = [&](uint32_t old_global) { return first_node + uint32_t(id_of_block[p.block_of[old_global - first_node]]); };
  std::vector<PdaNode> nodes;
  std::vector<ByteEdge> byte_edges;
  std::vector<RefEdge> ref_edges;
  for (uint32_t s : rep) {
    PdaNode node = pda.nodes[first_node + s];
    const uint32_t bb = node.byte_begin, be = node.byte_end, rb = node.ref_begin, re = node.ref_end;
    node.byte_begin = first_byte_edge + uint32_t(byte_edges.size());
    for (uint32_t e = bb; e < be; ++e) {
      ByteEdge edge = pda.byte_edges[e];
      edge.target = new_id(edge.target);
      if (byte_edges.size() > node.byte_begin - first_byte_edge && byte_edges.back().target == edge.target &&
          byte_edges.back().hi + 1 == edge.lo) {
        byte_edges.back().hi = edge.hi;  // neighbours that now lead to one state
      } else {
        byte_edges.push_back(edge);
      }
    }
    node.byte_end = first_byte_edge + uint32_t(byte_edges.size());
    node.ref_begin = first_ref_edge + uint32_t(ref_edges.size());
    for (uint32_t e = rb; e < re; ++e) ref_edges.push_back(RefEdge{pda.ref_edges[e].rule, new_id(pda.ref_edges[e].target)});
    node.ref_end = first_ref_edge + uint32_t(ref_edges.size());
    nodes.push_back(node);
  }
  pda.nodes.resize(first_node);
  pda.nodes.insert(pda.nodes.end(), nodes.begin(), nodes.end());
  pda.byte_edges.resize(first_byte_edge);
  pda.byte_edges.insert(pda.byte_edges.end(), byte_edges.begin(), byte_edges.end());
  pda.ref_edges.resize(first_ref_edge);
  pda.ref_edges.insert(pda.ref_edges.end(), ref_edges.begin(), ref_edges.end());
}

}  // namespace ds::grammar
