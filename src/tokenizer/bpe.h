// HF's BPE model for byte-level vocabularies: a word (one pre-token, as raw bytes) starts as one
// symbol per byte and the adjacent pair with the lowest merge rank (leftmost on ties) is merged
// until no pair has a merge.
#pragma once
#include <nlohmann/json_fwd.hpp>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/merge_table.h"

namespace ds::tok {

class BpeModel {
 public:
  // `j` is tokenizer.json's "model"; throws ds::Error on a missing/bad vocab or merges, or on
  // options this implementation does not support (dropout, byte_fallback, subword affixes).
  static BpeModel from_json(const nlohmann::json& j);

  // Appends the ids of one word (raw bytes). Uses a per-thread cache of recent words.
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;
  // Uncached merge loops, exposed so tests can check they agree: O(n^2) for short words and a
  // heap + linked list for long ones (encode_word picks by length).
  void merge_small(std::string_view word, std::vector<int32_t>& out) const;
  void merge_heap(std::string_view word, std::vector<int32_t>& out) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  // Vocab string of id, or nullptr if the vocab has no such id.
  const std::string* id_to_token(int32_t id) const;
  int32_t max_id() const { return int32_t(id_to_token_.size()) - 1; }
  size_t num_merges() const { return merges_.size(); }

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  void initial_symbols(std::string_view word, std::vector<int32_t>& syms) const;

  std::unordered_map<std::string, int32_t, Hash, std::equal_to<>> vocab_;
  std::vector<std::string> id_to_token_;  // "" where the vocab has no id
  MergeTable merges_;
  std::array<int32_t, 256> byte_id_{};  // id of each single-byte token, -1 if absent
  int32_t unk_id_ = -1;
  bool ignore_merges_ = false;
  uint64_t serial_ = 0;  // tells the per-thread word caches of different models apart
};

}  // namespace ds::tok
