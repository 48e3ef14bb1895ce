// Open-addressing hash map from a BPE pair (left id, right id) to its merge (rank, merged id):
// the inner loop of BPE does one lookup per candidate pair, so this is the hot path.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace ds::tok {

struct Merge {
  int32_t rank;
  int32_t id;  // id of the merged token
};

class MergeTable {
 public:
  void reserve(size_t n);
  // Inserts or overwrites (a later duplicate merge wins, as in HF's hash map).
  void put(int32_t a, int32_t b, Merge m);
  const Merge* find(int32_t a, int32_t b) const {
    if (keys_.empty()) return nullptr;
    uint64_t key = pack(a, b);
    for (size_t i = slot(key);; i = (i + 1) & mask_) {
      if (keys_[i] == key) return &vals_[i];
      if (keys_[i] == kEmpty) return nullptr;
    }
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  static uint64_t pack(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  size_t slot(uint64_t key) const { return size_t((key * 0x9E3779B97F4A7C15ull) >> shift_) & mask_; }
  void grow();

  std::vector<uint64_t> keys_;
  std::vector<Merge> vals_;
  size_t mask_ = 0, size_ = 0;
  int shift_ = 64;
};

}  // namespace ds::tok
