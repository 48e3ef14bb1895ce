#include "grammar/compiled_grammar.h"

namespace ds::grammar {

CompiledGrammar::CompiledGrammar(Pda pda, std::shared_ptr<const TokenTable> vocab, std::shared_ptr<NodeTokensCache> shared)
    : pda_(std::move(pda)), vocab_(std::move(vocab)), shared_(std::move(shared)) {
  nodes_.resize(pda_.nodes.size());
  ready_.reset(new std::atomic<const NodeTokens*>[pda_.nodes.size()]);
  for (size_t i = 0; i < pda_.nodes.size(); ++i) ready_[i].store(nullptr, std::memory_order_relaxed);
  rule_keys_.resize(pda_.rule_start.size());  // filled on first use of a rule's node
}

const NodeTokens& CompiledGrammar::node_tokens(uint32_t node) const {
  if (const NodeTokens* p = ready_[node].load(std::memory_order_acquire)) return *p;
  std::lock_guard lock(mu_);
  if (const NodeTokens* p = ready_[node].load(std::memory_order_acquire)) return *p;
  std::shared_ptr<const NodeTokens> value;
  std::string key;
  const uint32_t rule = pda_.nodes[node].rule;
  if (shared_ && !rule_keys_[rule]) {
    // A digest of the rule's structure: two independent 64-bit hashes of the canonical text.
    const std::string text = structural_key(pda_, rule);
    if (text.empty()) {
      rule_keys_[rule] = std::string();
    } else {
      uint64_t a = 1469598103934665603ull, b = 0x9E3779B97F4A7C15ull;
      for (unsigned char c : text) {
        a = (a ^ c) * 1099511628211ull;
        b = (b + c) * 0xff51afd7ed558ccdull;
        b ^= b >> 29;
      }
      std::string digest(reinterpret_cast<const char*>(&a), 8);
      digest.append(reinterpret_cast<const char*>(&b), 8);
      const uint64_t n = text.size();
      digest.append(reinterpret_cast<const char*>(&n), 8);
      rule_keys_[rule] = digest;
    }
  }
  if (shared_ && !rule_keys_[rule]->empty()) {
    key = *rule_keys_[rule];
    const uint32_t offset = node - pda_.rule_start[rule];
    key.append(reinterpret_cast<const char*>(&offset), sizeof offset);
    const ByteSet& f = pda_.rule_follow[rule];
    for (int b = 0; b < 256; b += 8) {
      char c = 0;
      for (int i = 0; i < 8; ++i) c = char(c | (f[b + i] << i));
      key += c;
    }
    value = shared_->find(key);
  }
  if (!value) {
    value = std::make_shared<const NodeTokens>(precompute_node_tokens(pda_, *vocab_, node));
    if (!key.empty()) shared_->insert(key, value);
  }
  nodes_[node] = value;
  ready_[node].store(value.get(), std::memory_order_release);
  return *value;
}

void CompiledGrammar::warm_up() const {
  // Nodes that only call are never asked for (the matcher reads their callees' sets).
  for (uint32_t n = 0; n < pda_.nodes.size(); ++n)
    if (pda_.nodes[n].byte_begin != pda_.nodes[n].byte_end) node_tokens(n);
}

}  // namespace ds::grammar
