#include "grammar/pda.h"

#include <algorithm>
#include <array>
#include <map>

#include "util/error.h"

namespace ds::grammar {

namespace {

// Thompson automaton of one rule body, with epsilon edges.
struct Nfa {
  struct Node {
    std::vector<uint32_t> eps;
    std::vector<std::pair<ByteSet, uint32_t>> bytes;
    std::vector<std::pair<uint32_t, uint32_t>> refs;  // (rule, target)
  };
  std::vector<Node> nodes;
  size_t limit = 0;
  const std::string* rule_name = nullptr;

  uint32_t add() {
    if (nodes.size() >= limit) fail("grammar rule '{}' is too large (over {} automaton nodes)", *rule_name, limit);
    nodes.emplace_back();
    return uint32_t(nodes.size() - 1);
  }
  // Adds e's states starting at s; returns its end state.
  uint32_t build(const Expr& e, uint32_t s) {
    switch (e.kind) {
      case Expr::Kind::Bytes: {
        uint32_t t = add();
        nodes[s].bytes.emplace_back(e.bytes, t);
        return t;
      }
      case Expr::Kind::Seq: {
        for (const auto& it : e.items) s = build(*it, s);
        return s;
      }
      case Expr::Kind::Alt: {
        uint32_t t = add();
        for (const auto& it : e.items) {
          uint32_t b = add();
          nodes[s].eps.push_back(b);
          uint32_t end = build(*it, b);
          nodes[end].eps.push_back(t);
        }
        return t;
      }
      case Expr::Kind::Repeat: {
        const Expr& item = *e.items[0];
        for (int i = 0; i < e.min; ++i) s = build(item, s);
        if (e.max < 0) {
          uint32_t loop = add();
          nodes[s].eps.push_back(loop);
          uint32_t end = build(item, loop);
          nodes[end].eps.push_back(loop);
          return loop;
        }
        std::vector<uint32_t> ends{s};
        for (int i = e.min; i < e.max; ++i) {
          s = build(item, s);
          ends.push_back(s);
        }
        uint32_t t = add();
        for (uint32_t x : ends) nodes[x].eps.push_back(t);
        return t;
      }
      case Expr::Kind::Ref: {
        uint32_t t = add();
        nodes[s].refs.emplace_back(uint32_t(e.rule), t);
        return t;
      }
    }
    return s;
  }
  std::vector<uint32_t> closure(std::vector<uint32_t> set) const {
    std::vector<char> seen(nodes.size(), 0);
    for (uint32_t x : set) seen[x] = 1;
    for (size_t i = 0; i < set.size(); ++i)
      for (uint32_t y : nodes[set[i]].eps)
        if (!seen[y]) {
          seen[y] = 1;
          set.push_back(y);
        }
    std::sort(set.begin(), set.end());
    return set;
  }
};

// Subset construction of one rule into pda (appends nodes and edges).
void determinize(const Nfa& nfa, uint32_t start, uint32_t final_state, uint32_t rule, size_t max_states,
                 const std::string& name, Pda& pda) {
  std::map<std::vector<uint32_t>, uint32_t> ids;
  std::vector<std::vector<uint32_t>> sets;
  const uint32_t base = uint32_t(pda.nodes.size());
  auto intern = [&](std::vector<uint32_t> set) {
    auto [it, fresh] = ids.emplace(std::move(set), uint32_t(sets.size()));
    if (fresh) {
      if (sets.size() >= max_states) fail("grammar rule '{}' is too large (over {} automaton states)", name, max_states);
      sets.push_back(it->first);
    }
    return base + it->second;
  };
  intern(nfa.closure({start}));
  for (size_t i = 0; i < sets.size(); ++i) {
    const std::vector<uint32_t> set = sets[i];
    PdaNode node;
    node.rule = rule;
    node.accepting = std::binary_search(set.begin(), set.end(), final_state);
    // Byte edges: bytes with the same set of NFA edges (a bit signature when there are at most 64
    // edges) have the same targets; runs of equal targets become one edge.
    std::vector<std::pair<const ByteSet*, uint32_t>> nfa_edges;
    std::map<uint32_t, std::vector<uint32_t>> by_rule;
    for (uint32_t x : set) {
      for (const auto& [bytes, t] : nfa.nodes[x].bytes) nfa_edges.emplace_back(&bytes, t);
      for (auto [r, t] : nfa.nodes[x].refs) by_rule[r].push_back(t);
    }
    std::vector<std::vector<uint32_t>> by_byte(256);
    if (nfa_edges.size() <= 64) {
      std::array<uint64_t, 256> sig{};
      for (size_t k = 0; k < nfa_edges.size(); ++k)
        for (int b = 0; b < 256; ++b)
          if ((*nfa_edges[k].first)[b]) sig[b] |= uint64_t(1) << k;
      std::map<uint64_t, int> first_byte;
      for (int b = 0; b < 256; ++b) {
        if (!sig[b]) continue;
        auto [it, fresh] = first_byte.emplace(sig[b], b);
        if (!fresh) {
          by_byte[b] = by_byte[it->second];
          continue;
        }
        for (size_t k = 0; k < nfa_edges.size(); ++k)
          if (sig[b] >> k & 1) by_byte[b].push_back(nfa_edges[k].second);
      }
    } else {
      for (const auto& [bytes, t] : nfa_edges)
        for (int b = 0; b < 256; ++b)
          if ((*bytes)[b]) by_byte[b].push_back(t);
    }
    std::vector<ByteEdge> edges;
    for (int b = 0; b < 256; ++b) {
      if (by_byte[b].empty()) continue;
      std::sort(by_byte[b].begin(), by_byte[b].end());
      by_byte[b].erase(std::unique(by_byte[b].begin(), by_byte[b].end()), by_byte[b].end());
      if (!edges.empty() && edges.back().hi == b - 1 && by_byte[b] == by_byte[b - 1]) {
        edges.back().hi = uint8_t(b);
        continue;
      }
      edges.push_back(ByteEdge{uint8_t(b), uint8_t(b), intern(nfa.closure(by_byte[b]))});
    }
    std::vector<RefEdge> refs;
    for (auto& [r, targets] : by_rule) refs.push_back(RefEdge{r, intern(nfa.closure(targets))});
    node.byte_begin = uint32_t(pda.byte_edges.size());
    pda.byte_edges.insert(pda.byte_edges.end(), edges.begin(), edges.end());
    node.byte_end = uint32_t(pda.byte_edges.size());
    node.ref_begin = uint32_t(pda.ref_edges.size());
    pda.ref_edges.insert(pda.ref_edges.end(), refs.begin(), refs.end());
    node.ref_end = uint32_t(pda.ref_edges.size());
    pda.nodes.push_back(node);
  }
}

// Nullable rules, can_end per node, FIRST per node and FOLLOW per rule, all by fixpoint.
void analyse(Pda& pda) {
  const size_t R = pda.rule_start.size(), N = pda.nodes.size();
  std::vector<char> nullable(R, 0);
  for (auto& n : pda.nodes) n.can_end = n.accepting;
  std::vector<ByteSet> first(N);
  for (size_t i = 0; i < N; ++i)
    for (uint32_t e = pda.nodes[i].byte_begin; e < pda.nodes[i].byte_end; ++e)
      for (int b = pda.byte_edges[e].lo; b <= pda.byte_edges[e].hi; ++b) first[i].set(b);
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t i = N; i-- > 0;) {
      PdaNode& n = pda.nodes[i];
      for (uint32_t e = n.ref_begin; e < n.ref_end; ++e) {
        const RefEdge& r = pda.ref_edges[e];
        ByteSet f = first[i] | first[pda.rule_start[r.rule]];
        if (nullable[r.rule]) {
          f |= first[r.target];
          if (pda.nodes[r.target].can_end && !n.can_end) n.can_end = changed = true;
        }
        if (f != first[i]) first[i] = f, changed = true;
      }
    }
    for (size_t r = 0; r < R; ++r)
      if (!nullable[r] && pda.nodes[pda.rule_start[r]].can_end) nullable[r] = 1, changed = true;
  }
  pda.rule_follow.assign(R, ByteSet{});
  pda.rule_follow_end.assign(R, false);
  pda.rule_follow_end[pda.nodes[pda.root].rule] = true;
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t i = 0; i < N; ++i) {
      const PdaNode& n = pda.nodes[i];
      for (uint32_t e = n.ref_begin; e < n.ref_end; ++e) {
        const RefEdge& r = pda.ref_edges[e];
        ByteSet f = pda.rule_follow[r.rule] | first[r.target];
        bool end = pda.rule_follow_end[r.rule];
        if (pda.nodes[r.target].can_end) {
          f |= pda.rule_follow[n.rule];
          end = end || pda.rule_follow_end[n.rule];
        }
        if (f != pda.rule_follow[r.rule] || end != pda.rule_follow_end[r.rule]) {
          pda.rule_follow[r.rule] = f;
          pda.rule_follow_end[r.rule] = end;
          changed = true;
        }
      }
    }
  }
  // Left recursion: rule A "left-calls" B when B is called before any byte of A is read.
  std::vector<std::vector<uint32_t>> left_calls(R);
  for (size_t r = 0; r < R; ++r) {
    std::vector<uint32_t> todo{pda.rule_start[r]};
    std::vector<char> seen(N, 0);
    seen[todo[0]] = 1;
    while (!todo.empty()) {
      uint32_t x = todo.back();
      todo.pop_back();
      for (uint32_t e = pda.nodes[x].ref_begin; e < pda.nodes[x].ref_end; ++e) {
        const RefEdge& re = pda.ref_edges[e];
        left_calls[r].push_back(re.rule);
        if (nullable[re.rule] && !seen[re.target]) seen[re.target] = 1, todo.push_back(re.target);
      }
    }
  }
  std::vector<int> color(R, 0);
  auto visit = [&](auto&& self, uint32_t r) -> void {
    color[r] = 1;
    for (uint32_t s : left_calls[r]) {
      if (color[s] == 1) fail("grammar rule '{}' is left-recursive (it can call itself before reading a byte)", pda.rule_names[s]);
      if (color[s] == 0) self(self, s);
    }
    color[r] = 2;
  };
  for (uint32_t r = 0; r < R; ++r)
    if (color[r] == 0) visit(visit, r);
}

}  // namespace

Pda compile_pda(const Grammar& g, const PdaLimits& limits) {
  DS_CHECK(g.root >= 0 && size_t(g.root) < g.rules.size(), "grammar has no root rule");
  Pda pda;
  for (const Rule& r : g.rules) {
    if (!r.body) fail("grammar rule '{}' is used but never defined", r.name);
    pda.rule_names.push_back(r.name);
  }
  for (size_t r = 0; r < g.rules.size(); ++r) {
    Nfa nfa;
    nfa.limit = limits.max_repeat_copies * 8 + 100000;
    nfa.rule_name = &g.rules[r].name;
    uint32_t start = nfa.add();
    uint32_t end = nfa.build(*g.rules[r].body, start);
    pda.rule_start.push_back(uint32_t(pda.nodes.size()));
    determinize(nfa, start, end, uint32_t(r), limits.max_states_per_rule, g.rules[r].name, pda);
  }
  pda.root = pda.rule_start[g.root];
  analyse(pda);
  return pda;
}

std::string structural_key(const Pda& pda, uint32_t rule, size_t max_words) {
  std::vector<uint32_t> order{rule};
  std::map<uint32_t, uint32_t> local{{rule, 0}};
  std::string key;
  auto put = [&](uint32_t v) { key.append(reinterpret_cast<const char*>(&v), sizeof v); };
  for (size_t i = 0; i < order.size(); ++i) {
    const uint32_t r = order[i];
    const uint32_t begin = pda.rule_start[r];
    uint32_t end = r + 1 < pda.rule_start.size() ? pda.rule_start[r + 1] : uint32_t(pda.nodes.size());
    if (key.size() / 4 > max_words) return {};
    put(0xFFFFFFFFu);
    put(end - begin);
    for (uint32_t n = begin; n < end; ++n) {
      const PdaNode& node = pda.nodes[n];
      put(node.accepting ? 1u : 0u);
      put(node.byte_end - node.byte_begin);
      for (uint32_t e = node.byte_begin; e < node.byte_end; ++e)
        put(uint32_t(pda.byte_edges[e].lo) << 8 | pda.byte_edges[e].hi), put(pda.byte_edges[e].target - begin);
      put(node.ref_end - node.ref_begin);
      for (uint32_t e = node.ref_begin; e < node.ref_end; ++e) {
        const RefEdge& re = pda.ref_edges[e];
        auto [it, fresh] = local.emplace(re.rule, uint32_t(order.size()));
        if (fresh) order.push_back(re.rule);
        put(it->second);
        put(re.target - begin);
      }
    }
  }
  return key;
}

}  // namespace ds::grammar
