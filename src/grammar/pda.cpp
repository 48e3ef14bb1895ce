#include "grammar/pda.h"

#include <algorithm>
#include <array>
#include <bit>
#include <map>
#include <memory>
#include <unordered_map>

#include "grammar/dfa_minimize.h"
#include "util/error.h"

namespace ds::grammar {

namespace {

// The byte ranges of a set, ascending.
std::vector<std::pair<uint8_t, uint8_t>> byte_ranges(const ByteSet& set) {
  std::vector<std::pair<uint8_t, uint8_t>> out;
  std::array<uint64_t, 4> words;
  for (int w = 0; w < 4; ++w) words[w] = ((set >> (64 * w)) & ByteSet(~uint64_t(0))).to_ullong();
  int b = 0;
  while (b < 256) {
    const uint64_t rest = words[b >> 6] >> (b & 63);
    if (rest == 0) {
      b = (b | 63) + 1;
      continue;
    }
    b += std::countr_zero(rest);
    int e = b;  // last byte of the run
    for (;;) {
      const int run = std::countr_one(words[e >> 6] >> (e & 63));
      e += run;
      if ((e & 63) != 0 || e == 256 || !(words[e >> 6] & 1)) break;
    }
    out.emplace_back(uint8_t(b), uint8_t(e - 1));
    b = e;
  }
  return out;
}

// Thompson automaton of one rule body, with epsilon edges. A byte edge keeps its set as ranges
// (computed once per expression node: bounded repetitions share their item's nodes).
struct Nfa {
  using Ranges = std::vector<std::pair<uint8_t, uint8_t>>;
  struct Node {
    std::vector<uint32_t> eps;
    std::vector<std::pair<const Ranges*, uint32_t>> bytes;
    std::vector<std::pair<uint32_t, uint32_t>> refs;  // (rule, target)
  };
  std::vector<Node> nodes;
  size_t limit = 0;
  const std::string* rule_name = nullptr;
  std::unordered_map<const Expr*, std::unique_ptr<Ranges>> ranges;
  // close(): visit stamps, so a closure costs its own size and not the automaton's.
  mutable std::vector<uint32_t> stamp;
  mutable uint32_t generation = 0;

  uint32_t add() {
    if (nodes.size() >= limit) fail("grammar rule '{}' is too large (over {} automaton nodes)", *rule_name, limit);
    nodes.emplace_back();
    return uint32_t(nodes.size() - 1);
  }
  const Ranges* ranges_of(const Expr& e) {
    auto& slot = ranges[&e];
    if (!slot) slot = std::make_unique<Ranges>(byte_ranges(e.bytes));
    return slot.get();
  }
  // Adds e's states starting at s; returns its end state.
  uint32_t build(const Expr& e, uint32_t s) {
    switch (e.kind) {
      case Expr::Kind::Bytes: {
        uint32_t t = add();
        nodes[s].bytes.emplace_back(ranges_of(e), t);
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
  // The epsilon closure of `set` (modified in place), sorted.
  void close(std::vector<uint32_t>& set) const {
    if (stamp.size() < nodes.size()) stamp.resize(nodes.size(), 0);
    if (++generation == 0) std::fill(stamp.begin(), stamp.end(), 0), generation = 1;
    size_t keep = 0;
    for (uint32_t x : set)
      if (stamp[x] != generation) stamp[x] = generation, set[keep++] = x;
    set.resize(keep);
    for (size_t i = 0; i < set.size(); ++i)
      for (uint32_t y : nodes[set[i]].eps)
        if (stamp[y] != generation) {
          stamp[y] = generation;
          set.push_back(y);
        }
    std::sort(set.begin(), set.end());
  }
};

struct StateSetHash {
  size_t operator()(const std::vector<uint32_t>& v) const {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ v.size();
    for (uint32_t x : v) h = (h ^ x) * 0xff51afd7ed558ccdull, h ^= h >> 32;
    return size_t(h);
  }
};

// Subset construction of one rule into pda (appends nodes and edges). States are numbered in the
// order they are found, from the start state.
void determinize(const Nfa& nfa, uint32_t start, uint32_t final_state, uint32_t rule, size_t max_states,
                 const std::string& name, Pda& pda) {
  // Keys of an unordered_map stay where they are, so `sets` can point at them.
  std::unordered_map<std::vector<uint32_t>, uint32_t, StateSetHash> ids;
  std::vector<const std::vector<uint32_t>*> sets;
  const uint32_t base = uint32_t(pda.nodes.size());
  auto intern = [&](std::vector<uint32_t>& targets) {
    nfa.close(targets);
    auto [it, fresh] = ids.try_emplace(targets, uint32_t(sets.size()));
    if (fresh) {
      if (sets.size() >= max_states) fail("grammar rule '{}' is too large (over {} automaton states)", name, max_states);
      sets.push_back(&it->first);
    }
    return base + it->second;
  };
  std::vector<uint32_t> first{start};
  intern(first);
  // Scratch reused by every state.
  std::vector<std::pair<const Nfa::Ranges*, uint32_t>> nfa_edges;
  std::vector<std::pair<uint32_t, uint32_t>> refs_found;  // (rule, NFA target)
  std::vector<uint64_t> sig;  // per byte, one bit per NFA byte edge of the state
  std::vector<uint32_t> targets, run_targets;
  std::vector<ByteEdge> edges;
  std::vector<RefEdge> refs;
  for (size_t i = 0; i < sets.size(); ++i) {
    const std::vector<uint32_t>& set = *sets[i];
    PdaNode node;
    node.rule = rule;
    node.accepting = std::binary_search(set.begin(), set.end(), final_state);
    nfa_edges.clear();
    refs_found.clear();
    for (uint32_t x : set) {
      for (const auto& e : nfa.nodes[x].bytes) nfa_edges.push_back(e);
      for (const auto& r : nfa.nodes[x].refs) refs_found.push_back(r);
    }
    // Bytes with the same signature (the set of NFA edges that read them) go to the same state;
    // a run of bytes whose target sets are equal becomes one edge.
    const size_t words = (nfa_edges.size() + 63) / 64;
    if (sig.size() < 256 * words) sig.assign(256 * words, 0);  // all zero between states (cleared below)
    std::array<uint64_t, 4> any{};  // bytes with at least one edge: only those are visited below
    for (size_t k = 0; k < nfa_edges.size(); ++k)
      for (auto [lo, hi] : *nfa_edges[k].first)
        for (int b = lo; b <= hi; ++b) {
          sig[size_t(b) * words + k / 64] |= uint64_t(1) << (k % 64);
          any[b >> 6] |= uint64_t(1) << (b & 63);
        }
    edges.clear();
    int prev_b = -2;  // the last byte with targets
    for (int w64 = 0; w64 < 4; ++w64) {
      for (uint64_t bits64 = any[w64]; bits64; bits64 &= bits64 - 1) {
        const int b = w64 * 64 + std::countr_zero(bits64);
        const uint64_t* row = &sig[size_t(b) * words];
        const bool same_row = prev_b == b - 1 && std::equal(row, row + words, row - words);
        if (!same_row) {
          targets.clear();
          for (size_t w = 0; w < words; ++w)
            for (uint64_t bits = row[w]; bits; bits &= bits - 1)
              targets.push_back(nfa_edges[w * 64 + size_t(std::countr_zero(bits))].second);
          std::sort(targets.begin(), targets.end());
          targets.erase(std::unique(targets.begin(), targets.end()), targets.end());
        }
        if (prev_b == b - 1 && (same_row || targets == run_targets)) {
          edges.back().hi = uint8_t(b);
        } else {
          run_targets = targets;
          edges.push_back(ByteEdge{uint8_t(b), uint8_t(b), intern(targets)});
        }
        prev_b = b;
      }
    }
    for (int w64 = 0; w64 < 4; ++w64)
      for (uint64_t bits64 = any[w64]; bits64; bits64 &= bits64 - 1)
        std::fill_n(&sig[size_t(w64 * 64 + std::countr_zero(bits64)) * words], words, 0);
    // Reference edges, one per rule (ascending).
    std::sort(refs_found.begin(), refs_found.end());
    refs.clear();
    for (size_t a = 0; a < refs_found.size();) {
      size_t z = a;
      targets.clear();
      while (z < refs_found.size() && refs_found[z].first == refs_found[a].first) targets.push_back(refs_found[z++].second);
      refs.push_back(RefEdge{refs_found[a].first, intern(targets)});
      a = z;
    }
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
    const uint32_t byte_edges = uint32_t(pda.byte_edges.size()), ref_edges = uint32_t(pda.ref_edges.size());
    determinize(nfa, start, end, uint32_t(r), limits.max_states_per_rule, g.rules[r].name, pda);
    if (limits.minimize) minimize_last_rule(pda, pda.rule_start.back(), byte_edges, ref_edges);
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
