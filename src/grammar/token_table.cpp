#include "grammar/token_table.h"

#include <algorithm>
#include <bit>
#include <numeric>

#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace ds::grammar {

std::shared_ptr<const TokenTable> TokenTable::from_bytes(std::vector<std::string> token_bytes, std::vector<int32_t> stop_ids) {
  auto t = std::make_shared<TokenTable>();
  t->bytes_ = std::move(token_bytes);
  for (int32_t s : stop_ids) DS_CHECK(s >= 0 && s < t->vocab_size(), "stop token {} is outside the vocabulary", s);
  std::sort(stop_ids.begin(), stop_ids.end());
  stop_ids.erase(std::unique(stop_ids.begin(), stop_ids.end()), stop_ids.end());
  t->stop_ids_ = std::move(stop_ids);

  std::vector<int32_t> order;
  for (int32_t id = 0; id < t->vocab_size(); ++id)
    if (!t->bytes_[id].empty() && !t->is_stop(id)) order.push_back(id);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return t->bytes_[a] != t->bytes_[b] ? t->bytes_[a] < t->bytes_[b] : a < b;
  });
  t->dfs_tokens_ = order;
  t->lcp_.assign(order.size(), 0);
  for (size_t r = 1; r < order.size(); ++r) {
    const std::string &a = t->bytes_[order[r - 1]], &b = t->bytes_[order[r]];
    uint32_t l = 0;
    while (l < a.size() && l < b.size() && a[l] == b[l]) ++l;
    t->lcp_[r] = l;
  }
  // The trie from the sorted list: path[d] is the node at depth d on the previous token's path, and
  // a node's new child always sorts after its existing ones. Tokens that end at a node come first
  // in its subtree, so both ranges are [tok_lo, ...).
  auto& trie = t->trie_;
  trie.emplace_back();
  std::vector<uint32_t> last_child{0};
  std::vector<uint32_t> path{0};
  for (uint32_t r = 0; r < order.size(); ++r) {
    const std::string& s = t->bytes_[order[r]];
    path.resize(std::min<size_t>(t->lcp_[r], s.size()) + 1);
    for (size_t d = path.size() - 1; d < s.size(); ++d) {
      const uint32_t id = uint32_t(trie.size()), parent = path[d];
      TrieNode n;
      n.byte = uint8_t(s[d]);
      n.tok_lo = n.own_hi = r;
      trie.push_back(n);
      if (last_child[parent] == 0) {
        trie[parent].first_child = id;
      } else {
        trie[last_child[parent]].next_sibling = id;
      }
      last_child[parent] = id;
      last_child.push_back(0);
      path.push_back(id);
    }
    for (uint32_t node : path) trie[node].tok_hi = r + 1;
    trie[path.back()].own_hi = r + 1;
  }
  trie[0].own_hi = 0;
  // A node's subtree ends where the next node that is not its descendant starts: its next sibling,
  // else its parent's end (a parent comes first in preorder, so its end is known by then).
  trie[0].subtree_end = uint32_t(trie.size());
  for (uint32_t id = 0; id < trie.size(); ++id)
    for (uint32_t c = trie[id].first_child; c != 0; c = trie[c].next_sibling)
      trie[c].subtree_end = trie[c].next_sibling ? trie[c].next_sibling : trie[id].subtree_end;
  return t;
}

std::shared_ptr<const TokenTable> TokenTable::from_tokenizer(const tok::Tokenizer& tok, std::vector<int32_t> stop_ids) {
  std::vector<std::string> bytes(size_t(tok.vocab_size()));
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    if (tok.is_added(id)) continue;  // specials, and added text the grammar does not expect
    std::string raw;
    try {
      raw = tok.id_to_token(id);
    } catch (const Error&) {
      continue;  // an undefined id
    }
    bytes[id] = tok::byte_level::token_to_bytes(raw);
  }
  return from_bytes(std::move(bytes), std::move(stop_ids));
}

bool TokenTable::is_stop(int32_t id) const { return std::binary_search(stop_ids_.begin(), stop_ids_.end(), id); }

size_t TokenBitmask::count() const {
  size_t n = 0;
  for (uint64_t w : words) n += size_t(std::popcount(w));
  return n;
}

std::vector<int32_t> TokenBitmask::ids() const {
  std::vector<int32_t> out;
  for (size_t i = 0; i < words.size(); ++i)
    for (uint64_t w = words[i]; w; w &= w - 1) out.push_back(int32_t(i * 64 + size_t(std::countr_zero(w))));
  return out;
}

}  // namespace ds::grammar
