#include "grammar/jump_forward.h"

#include <string>

namespace ds::grammar {

namespace {

// The child of trie node `node` for byte `b`; 0 if none.
uint32_t child(const std::vector<TrieNode>& trie, uint32_t node, uint8_t b) {
  for (uint32_t c = trie[node].first_child; c != 0; c = trie[c].next_sibling) {
    if (trie[c].byte == b) return c;
    if (trie[c].byte > b) break;  // children are in ascending byte order
  }
  return 0;
}

// `ids` are vocabulary tokens whose bytes, one after another, are exactly `want`.
bool spells(const TokenTable& vocab, const std::vector<int32_t>& ids, std::string_view want) {
  size_t at = 0;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab.vocab_size()) return false;
    const std::string& b = vocab.bytes(id);
    if (b.empty() || b.size() > want.size() - at || want.compare(at, b.size(), b) != 0) return false;
    at += b.size();
  }
  return at == want.size();
}

// The forced bytes as tokens (see the header: canonical where the tokenizer allows it).
std::vector<int32_t> split_forced(const TokenTable& vocab, const EncodeFn& encode, int32_t prev, std::string_view forced) {
  if (encode) {
    if (prev >= 0 && prev < vocab.vocab_size() && !vocab.bytes(prev).empty()) {
      std::vector<int32_t> ids = encode(vocab.bytes(prev) + std::string(forced));
      if (!ids.empty() && ids[0] == prev) {
        ids.erase(ids.begin());
        if (spells(vocab, ids, forced)) return ids;
      }
    }
    std::vector<int32_t> ids = encode(forced);
    if (spells(vocab, ids, forced)) return ids;
  }
  return longest_match_tokens(vocab, forced);
}

// Whether, from the matcher's state, some non-empty byte string allowed by the grammar extends the
// trie node `node` to a token (a depth-first walk that stops at the first one; rejected bytes prune
// their subtree).
bool longer_token_allowed(GrammarMatcher& m, const std::vector<TrieNode>& trie, uint32_t node) {
  for (uint32_t c = trie[node].first_child; c != 0; c = trie[c].next_sibling) {
    const char b = char(trie[c].byte);
    if (!m.accept_bytes(std::string_view(&b, 1))) continue;
    const bool found = trie[c].own_hi > trie[c].tok_lo || longer_token_allowed(m, trie, c);
    m.rollback(1);
    if (found) return true;
  }
  return false;
}

}  // namespace

size_t utf8_whole_prefix(std::string_view s) {
  // Back up over continuation bytes to the last lead byte; keep it only if its sequence is whole.
  size_t i = s.size();
  size_t cont = 0;
  while (i > 0 && (uint8_t(s[i - 1]) & 0xC0) == 0x80 && cont < 3) --i, ++cont;
  if (i == 0) return cont == 0 ? 0 : s.size();  // only continuation bytes: not ours to judge
  const uint8_t lead = uint8_t(s[i - 1]);
  const size_t need = lead < 0x80 ? 0 : (lead >> 5) == 0x6 ? 1 : (lead >> 4) == 0xE ? 2 : (lead >> 3) == 0x1E ? 3 : cont;
  return need <= cont ? s.size() : i - 1;
}

std::vector<int32_t> longest_match_tokens(const TokenTable& vocab, std::string_view bytes) {
  const auto& trie = vocab.trie();
  std::vector<int32_t> out;
  size_t at = 0;
  while (at < bytes.size()) {
    int32_t best = -1;
    size_t best_len = 0;
    uint32_t node = 0;
    for (size_t k = at; k < bytes.size(); ++k) {
      node = child(trie, node, uint8_t(bytes[k]));
      if (node == 0) break;
      if (trie[node].own_hi > trie[node].tok_lo) best = vocab.dfs_tokens()[trie[node].tok_lo], best_len = k - at + 1;
    }
    if (best < 0) return {};
    out.push_back(best);
    at += best_len;
  }
  return out;
}

std::vector<int32_t> jump_forward_tokens(GrammarMatcher& m, const EncodeFn& encode, int32_t prev_token,
                                         const JumpForwardOptions& o) {
  std::vector<int32_t> out;
  if (o.max_tokens == 0 || m.finished()) return out;
  const TokenTable& vocab = m.grammar().vocab();
  const size_t start = m.steps_accepted();
  std::string forced = m.forced_bytes(o.max_bytes);
  forced.resize(utf8_whole_prefix(forced));  // a character cut in two would be split badly
  if (!forced.empty()) {
    for (int32_t id : split_forced(vocab, encode, prev_token, forced)) {
      if (out.size() == o.max_tokens || !m.accept_token(id)) break;
      out.push_back(id);
    }
    // Hand the last token back when the output goes on after it and could merge with it.
    if (!out.empty() && out.size() < o.max_tokens && !m.must_finish()) {
      uint32_t node = 0;
      for (char b : vocab.bytes(out.back())) node = child(vocab.trie(), node, uint8_t(b));
      if (longer_token_allowed(m, vocab.trie(), node)) {
        m.rollback(1);
        out.pop_back();
      }
    }
  }
  // Nothing but the end can follow: the stop token (when the vocabulary has one).
  if (o.may_stop && out.size() < o.max_tokens && vocab.stop_ids().size() == 1 && m.can_finish() && m.must_finish() &&
      m.accept_token(vocab.stop_ids()[0]))
    out.push_back(vocab.stop_ids()[0]);
  m.rollback(m.steps_accepted() - start);
  return out;
}

}  // namespace ds::grammar
