#include "tokenizer/bpe.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <queue>

#include "tokenizer/byte_level.h"
#include "util/error.h"

namespace ds::tok {
namespace {
using json = nlohmann::json;

// Words up to this many bytes use the quadratic loop; it beats the heap on short words.
constexpr size_t kSmallWord = 48;
constexpr size_t kCacheMaxWord = 64;
constexpr size_t kCacheMaxEntries = size_t{1} << 16;

std::atomic<uint64_t> g_serial{1};

struct WordCache {
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  uint64_t owner = 0;
  std::unordered_map<std::string, std::vector<int32_t>, Hash, std::equal_to<>> map;
};

void reject_option(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return;
  bool set = it->is_boolean() ? it->get<bool>() : it->is_string() ? !it->get<std::string>().empty()
                                              : it->is_number() ? it->get<double>() != 0.0
                                                                : true;
  DS_CHECK(!set, "tokenizer.json: BPE option \"{}\" = {} is not supported", key, it->dump());
}

std::pair<std::string, std::string> parse_merge(const json& m, size_t index) {
  if (m.is_string()) {
    const std::string& s = m.get_ref<const std::string&>();
    size_t sp = s.find(' ');
    DS_CHECK(sp != std::string::npos && s.find(' ', sp + 1) == std::string::npos,
             "tokenizer.json: bad merge {} \"{}\" (want \"left right\")", index, s);
    return {s.substr(0, sp), s.substr(sp + 1)};
  }
  DS_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(),
           "tokenizer.json: bad merge {} {} (want \"left right\" or [\"left\", \"right\"])", index, m.dump());
  return {m[0].get<std::string>(), m[1].get<std::string>()};
}
}  // namespace

BpeModel BpeModel::from_json(const json& j) {
  DS_CHECK(j.is_object(), "tokenizer.json: no \"model\" object");
  std::string type = j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>() : "";
  // Older files omit the type; they are BPE when they have merges.
  DS_CHECK(type == "BPE" || (type.empty() && j.contains("merges")),
           "tokenizer.json: unsupported model type \"{}\" (only BPE)", type);
  reject_option(j, "dropout");
  reject_option(j, "continuing_subword_prefix");
  reject_option(j, "end_of_word_suffix");
  reject_option(j, "byte_fallback");
  reject_option(j, "fuse_unk");

  BpeModel m;
  m.serial_ = g_serial.fetch_add(1);
  auto vocab = j.find("vocab");
  DS_CHECK(vocab != j.end() && vocab->is_object(), "tokenizer.json: model has no \"vocab\" object");
  int64_t max_id = -1;
  m.vocab_.reserve(vocab->size());
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    DS_CHECK(it.value().is_number_integer(), "tokenizer.json: vocab entry \"{}\" has a non-integer id", it.key());
    int64_t id = it.value().get<int64_t>();
    DS_CHECK(id >= 0 && id < (int64_t{1} << 30), "tokenizer.json: vocab entry \"{}\" has id {} out of range",
             it.key(), id);
    m.vocab_[it.key()] = int32_t(id);
    max_id = std::max(max_id, id);
  }
  m.id_to_token_.assign(size_t(max_id + 1), std::string());
  for (auto& [tok, id] : m.vocab_) m.id_to_token_[size_t(id)] = tok;

  auto merges = j.find("merges");
  DS_CHECK(merges != j.end() && merges->is_array(), "tokenizer.json: model has no \"merges\" array");
  m.merges_.reserve(merges->size());
  for (size_t i = 0; i < merges->size(); ++i) {
    auto [a, b] = parse_merge((*merges)[i], i);
    auto ia = m.token_to_id(a), ib = m.token_to_id(b), im = m.token_to_id(a + b);
    DS_CHECK(ia && ib, "tokenizer.json: merge {} \"{} {}\" uses a token that is not in the vocab", i, a, b);
    DS_CHECK(im.has_value(), "tokenizer.json: merge {} \"{} {}\" makes \"{}{}\", which is not in the vocab", i, a,
             b, a, b);
    m.merges_.put(*ia, *ib, Merge{int32_t(i), *im});
  }

  if (auto unk = j.find("unk_token"); unk != j.end() && unk->is_string()) {
    auto id = m.token_to_id(unk->get<std::string>());
    DS_CHECK(id.has_value(), "tokenizer.json: unk_token \"{}\" is not in the vocab", unk->get<std::string>());
    m.unk_id_ = *id;
  }
  if (auto im = j.find("ignore_merges"); im != j.end() && im->is_boolean()) m.ignore_merges_ = im->get<bool>();
  for (int b = 0; b < 256; ++b) {
    auto id = m.token_to_id(byte_level::byte_to_utf8()[b]);
    m.byte_id_[b] = id ? *id : -1;
  }
  return m;
}

std::optional<int32_t> BpeModel::token_to_id(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || size_t(id) >= id_to_token_.size() || id_to_token_[size_t(id)].empty()) return nullptr;
  return &id_to_token_[size_t(id)];
}

void BpeModel::initial_symbols(std::string_view word, std::vector<int32_t>& syms) const {
  syms.clear();
  for (unsigned char c : word) {
    int32_t id = byte_id_[c];
    // A byte without a token becomes unk when the model has one; otherwise it is dropped (HF).
    if (id < 0) id = unk_id_;
    if (id >= 0) syms.push_back(id);
  }
}

void BpeModel::merge_small(std::string_view word, std::vector<int32_t>& out) const {
  thread_local std::vector<int32_t> syms;
  thread_local std::vector<Merge> pair;  // pair[i]: merge of syms[i], syms[i+1] (rank -1: none)
  initial_symbols(word, syms);
  auto merge_of = [&](size_t i) {
    const Merge* m = merges_.find(syms[i], syms[i + 1]);
    return m ? *m : Merge{-1, -1};
  };
  pair.clear();
  for (size_t i = 0; i + 1 < syms.size(); ++i) pair.push_back(merge_of(i));
  while (!pair.empty()) {
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < pair.size(); ++i)
      if (pair[i].rank >= 0 && (best == SIZE_MAX || pair[i].rank < pair[best].rank)) best = i;
    if (best == SIZE_MAX) break;
    syms[best] = pair[best].id;
    syms.erase(syms.begin() + std::ptrdiff_t(best) + 1);
    pair.erase(pair.begin() + std::ptrdiff_t(best));
    if (best > 0) pair[best - 1] = merge_of(best - 1);
    if (best < pair.size()) pair[best] = merge_of(best);
  }
  out.insert(out.end(), syms.begin(), syms.end());
}

void BpeModel::merge_heap(std::string_view word, std::vector<int32_t>& out) const {
  thread_local std::vector<int32_t> sym, prev, next;
  initial_symbols(word, sym);
  const int32_t n = int32_t(sym.size());
  prev.resize(size_t(n));
  next.resize(size_t(n));
  for (int32_t i = 0; i < n; ++i) {
    prev[size_t(i)] = i - 1;
    next[size_t(i)] = i + 1 < n ? i + 1 : -1;
  }
  // Candidates ordered by (rank, position); stale ones are recognised when popped. A symbol keeps
  // the index of its first byte, so position order is text order.
  struct Cand {
    int32_t rank, pos, id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<>> heap;
  auto consider = [&](int32_t i) {
    if (i < 0 || next[size_t(i)] < 0) return;
    if (const Merge* m = merges_.find(sym[size_t(i)], sym[size_t(next[size_t(i)])])) heap.push({m->rank, i, m->id});
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);
  std::vector<bool> dead(size_t(n), false);
  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    size_t p = size_t(c.pos);
    if (dead[p] || next[p] < 0) continue;
    const Merge* m = merges_.find(sym[p], sym[size_t(next[p])]);
    if (!m || m->id != c.id) continue;  // the pair changed since this candidate was pushed
    size_t r = size_t(next[p]);
    sym[p] = c.id;
    dead[r] = true;
    next[p] = next[r];
    if (next[r] >= 0) prev[size_t(next[r])] = int32_t(p);
    consider(prev[p]);
    consider(int32_t(p));
  }
  for (int32_t i = n > 0 ? 0 : -1; i >= 0; i = next[size_t(i)]) out.push_back(sym[size_t(i)]);
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.size() == 1 && byte_id_[uint8_t(word[0])] >= 0) {
    out.push_back(byte_id_[uint8_t(word[0])]);
    return;
  }
  if (ignore_merges_) {
    if (auto id = token_to_id(byte_level::bytes_to_token(word))) {
      out.push_back(*id);
      return;
    }
  }
  if (word.size() > kCacheMaxWord) {
    if (word.size() <= kSmallWord)
      merge_small(word, out);
    else
      merge_heap(word, out);
    return;
  }
  thread_local WordCache cache;
  if (cache.owner != serial_) {
    cache.map.clear();
    cache.owner = serial_;
  }
  if (auto it = cache.map.find(word); it != cache.map.end()) {
    out.insert(out.end(), it->second.begin(), it->second.end());
    return;
  }
  size_t start = out.size();
  if (word.size() <= kSmallWord)
    merge_small(word, out);
  else
    merge_heap(word, out);
  if (cache.map.size() >= kCacheMaxEntries) cache.map.clear();
  cache.map.emplace(std::string(word), std::vector<int32_t>(out.begin() + std::ptrdiff_t(start), out.end()));
}

}  // namespace ds::tok
