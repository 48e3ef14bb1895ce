#include "tokenizer/added_tokens.h"

#include <cstring>

#include "tokenizer/utf8.h"

namespace ds::tok {

void AddedTokenSplitter::Trie::add(std::string_view s, int32_t token) {
  if (s.empty()) return;
  first_byte[uint8_t(s[0])] = true;
  int32_t n = 0;
  for (unsigned char c : s) {
    int32_t next = -1;
    for (auto& [b, k] : nodes[size_t(n)].kids)
      if (b == c) next = k;
    if (next < 0) {
      next = int32_t(nodes.size());
      nodes[size_t(n)].kids.emplace_back(c, next);
      nodes.emplace_back();
    }
    n = next;
  }
  // The first token with a given content wins, as HF skips re-adding an existing token.
  if (nodes[size_t(n)].token < 0) nodes[size_t(n)].token = token;
}

int32_t AddedTokenSplitter::Trie::longest_at(std::string_view text, size_t pos, size_t& len) const {
  int32_t best = -1, n = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    int32_t next = -1;
    for (auto& [b, k] : nodes[size_t(n)].kids)
      if (b == uint8_t(text[i])) next = k;
    if (next < 0) break;
    n = next;
    if (nodes[size_t(n)].token >= 0) {
      best = nodes[size_t(n)].token;
      len = i + 1 - pos;
    }
  }
  return best;
}

AddedTokenSplitter::AddedTokenSplitter() : word_("\\w", false, "\\w") {}

AddedTokenSplitter::AddedTokenSplitter(const std::vector<AddedToken>& tokens) : AddedTokenSplitter() {
  tokens_ = tokens;
  for (size_t i = 0; i < tokens_.size(); ++i)
    (tokens_[i].normalized ? normalized_ : raw_).add(tokens_[i].content, int32_t(i));
}

bool AddedTokenSplitter::word_char_before(std::string_view text, size_t pos) const {
  if (pos == 0) return false;
  size_t start = utf8::prev_start(text, pos);
  return word_.matches_at(text.substr(0, pos), start);
}

bool AddedTokenSplitter::word_char_at(std::string_view text, size_t pos) const {
  return pos < text.size() && word_.matches_at(text, pos);
}

void AddedTokenSplitter::split_pass(const Trie& trie, std::string_view text, size_t base,
                                    std::vector<Segment>& out) const {
  size_t done = 0;  // text before this is already in out
  size_t pos = 0;   // where the search for the next match goes on
  const bool any = trie.nodes[0].kids.size() > 0;
  while (any && pos < text.size()) {
    if (!trie.first_byte[uint8_t(text[pos])]) {
      ++pos;
      continue;
    }
    size_t len = 0;
    int32_t t = trie.longest_at(text, pos, len);
    if (t < 0) {
      ++pos;
      continue;
    }
    const AddedToken& tok = tokens_[size_t(t)];
    size_t start = pos, stop = pos + len;
    pos = stop;  // like an Aho-Corasick iterator, the next search starts after this match
    if (tok.single_word && (word_char_before(text, start) || word_char_at(text, stop))) continue;
    if (tok.lstrip) {
      while (start > done) {
        size_t p = utf8::prev_start(text, start);
        char32_t cp;
        if (utf8::decode_at(text, p, cp) != start - p || !utf8::is_white_space(cp)) break;
        start = p;
      }
    }
    if (tok.rstrip) {
      char32_t cp;
      for (size_t n; stop < text.size() && (n = utf8::decode_at(text, stop, cp)) && utf8::is_white_space(cp);)
        stop += n;
      pos = std::max(pos, stop);  // (HF could overlap the next match here; we do not)
    }
    if (done < start) out.push_back({base + done, base + start, -1});
    out.push_back({base + start, base + stop, tok.id});
    done = stop;
  }
  if (done < text.size()) out.push_back({base + done, base + text.size(), -1});
}

void AddedTokenSplitter::split(std::string_view text, std::vector<Segment>& out) const {
  thread_local std::vector<Segment> first;
  first.clear();
  split_pass(raw_, text, 0, first);
  for (const Segment& s : first) {
    if (s.id >= 0)
      out.push_back(s);
    else
      split_pass(normalized_, text.substr(s.begin, s.end - s.begin), s.begin, out);
  }
}

}  // namespace ds::tok
