#include "grammar/matcher.h"

#include <algorithm>

#include "util/error.h"

namespace ds::grammar {

GrammarMatcher::GrammarMatcher(std::shared_ptr<const CompiledGrammar> grammar)
    : grammar_(std::move(grammar)), stepper_(grammar_->pda(), arena_) {
  Step s;
  s.arena_mark = 0;
  s.kernel = stepper_.start_kernel(grammar_->pda().root, kRootParent);
  history_.push_back(std::move(s));
}

bool GrammarMatcher::walk(const Kernel& from, std::string_view bytes, Kernel& out) {
  Kernel cur = from;
  for (unsigned char b : bytes) {
    stepper_.advance(cur, b, out);
    if (out.empty()) return false;
    cur.swap(out);
  }
  out.swap(cur);
  return true;
}

bool GrammarMatcher::accept_bytes(std::string_view bytes) {
  if (finished()) return false;
  const size_t mark = arena_.size();
  Step s;
  s.arena_mark = mark;
  if (!walk(history_.back().kernel, bytes, s.kernel)) {
    arena_.truncate(mark);
    return false;
  }
  history_.push_back(std::move(s));
  return true;
}

bool GrammarMatcher::accept_token(int32_t id) {
  const TokenTable& vocab = grammar_->vocab();
  if (id < 0 || id >= vocab.vocab_size() || finished()) return false;
  if (vocab.is_stop(id)) {
    if (!can_finish()) return false;
    Step s{history_.back().kernel, arena_.size(), true};
    history_.push_back(std::move(s));
    return true;
  }
  const std::string& bytes = vocab.bytes(id);
  if (bytes.empty()) return false;
  return accept_bytes(bytes);
}

void GrammarMatcher::rollback(size_t steps) {
  DS_CHECK(steps <= steps_accepted(), "grammar rollback of {} steps, only {} accepted", steps, steps_accepted());
  for (size_t i = 0; i < steps; ++i) {
    arena_.truncate(history_.back().arena_mark);
    history_.pop_back();
  }
}

bool GrammarMatcher::can_finish() const { return stepper_.can_finish(history_.back().kernel); }

bool GrammarMatcher::must_finish() {
  if (finished()) return true;
  const auto& cl = stepper_.closure(history_.back().kernel);
  const Pda& pda = grammar_->pda();
  for (uint32_t f : cl)
    if (pda.nodes[arena_[f].node].byte_begin != pda.nodes[arena_[f].node].byte_end) return false;
  return true;
}

std::string GrammarMatcher::forced_bytes(size_t max_bytes) {
  std::string out;
  if (finished()) return out;
  const size_t mark = arena_.size();
  const Pda& pda = grammar_->pda();
  Kernel cur = history_.back().kernel, next;
  while (out.size() < max_bytes && !stepper_.can_finish(cur)) {
    const auto& cl = stepper_.closure(cur);
    int only = -1;
    bool several = false;
    for (uint32_t f : cl) {
      const PdaNode& n = pda.nodes[arena_[f].node];
      for (uint32_t e = n.byte_begin; e < n.byte_end && !several; ++e) {
        const ByteEdge& be = pda.byte_edges[e];
        if (be.lo != be.hi || (only >= 0 && only != be.lo)) several = true;
        only = be.lo;
      }
      if (several) break;
    }
    if (several || only < 0) break;
    stepper_.advance(cur, uint8_t(only), next);
    if (next.empty()) break;
    out += char(only);
    cur.swap(next);
  }
  arena_.truncate(mark);
  return out;
}

void GrammarMatcher::fill_next_token_mask(TokenBitmask& mask) {
  const TokenTable& vocab = grammar_->vocab();
  const Pda& pda = grammar_->pda();
  mask.reset(vocab.vocab_size());
  const Step& top = history_.back();
  if (!top.finished) {
    const size_t mark = arena_.size();
    // The frames whose token sets make the mask. A frame whose node only calls (no byte edges: a
    // value slot, a grammar's start) is replaced by the frames its calls and returns reach that
    // read bytes: their sets are the callees' own (shared between grammars, cheap to walk for a
    // rule without calls), where the caller's set would be a walk of the whole vocabulary through
    // the callee with a stack. Exact either way: every token starts at a frame that reads a byte.
    std::vector<uint32_t> frames, call_only;
    for (uint32_t f : top.kernel) {
      const PdaNode& n = pda.nodes[arena_[f].node];
      if (n.byte_begin != n.byte_end) {
        frames.push_back(f);
      } else if (n.ref_begin != n.ref_end) {
        call_only.push_back(f);
      }
    }
    if (!call_only.empty())
      for (uint32_t f : stepper_.closure(call_only)) {
        const PdaNode& n = pda.nodes[arena_[f].node];
        if (n.byte_begin != n.byte_end) frames.push_back(f);
      }
    std::vector<uint32_t> uncertain;
    for (uint32_t f : frames) {
      const uint32_t node = arena_[f].node;
      const NodeTokens& nt = grammar_->node_tokens(node);
      if (nt.dense) {
        for (size_t i = 0; i < mask.words.size(); ++i) mask.words[i] |= nt.accepted_bits.words[i];
      } else {
        for (int32_t id : nt.accepted_ids) mask.set(id);
      }
      uncertain.insert(uncertain.end(), nt.uncertain.begin(), nt.uncertain.end());
    }
    if (!uncertain.empty()) {
      std::sort(uncertain.begin(), uncertain.end());
      uncertain.erase(std::unique(uncertain.begin(), uncertain.end()), uncertain.end());
      // Check each against the whole stack, in byte order so that a shared prefix is walked once:
      // states[d] is the kernel after the first d bytes of `prev`, for d <= depth.
      if (scratch_.empty()) scratch_.resize(1);
      scratch_[0] = top.kernel;
      std::string_view prev;
      size_t depth = 0;
      for (uint32_t rank : uncertain) {
        const int32_t id = vocab.dfs_tokens()[rank];
        if (mask.test(id)) continue;
        const std::string& s = vocab.bytes(id);
        size_t d = 0;
        while (d < depth && d < s.size() && prev[d] == s[d]) ++d;
        prev = s;
        if (scratch_.size() < s.size() + 1) scratch_.resize(s.size() + 1);
        bool alive = !scratch_[d].empty();
        while (alive && d < s.size()) {
          stepper_.advance(scratch_[d], uint8_t(s[d]), scratch_[d + 1]);
          ++d;
          alive = !scratch_[d].empty();
        }
        depth = d;
        if (alive) mask.set(id);
      }
    }
    arena_.truncate(mark);
  }
  if (top.finished || can_finish())
    for (int32_t s : vocab.stop_ids()) mask.set(s);
}

bool grammar_matches(const std::shared_ptr<const CompiledGrammar>& grammar, std::string_view text) {
  GrammarMatcher m(grammar);
  return m.accept_bytes(text) && m.can_finish();
}

}  // namespace ds::grammar
