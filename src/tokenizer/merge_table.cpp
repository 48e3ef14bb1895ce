#include "tokenizer/merge_table.h"

#include <algorithm>
#include <bit>

namespace ds::tok {

void MergeTable::reserve(size_t n) {
  size_t cap = std::bit_ceil(std::max<size_t>(16, n * 2));  // load factor <= 1/2
  if (cap <= keys_.size()) return;
  std::vector<uint64_t> old_keys = std::move(keys_);
  std::vector<Merge> old_vals = std::move(vals_);
  keys_.assign(cap, kEmpty);
  vals_.assign(cap, Merge{});
  mask_ = cap - 1;
  shift_ = 64 - std::countr_zero(cap);
  size_ = 0;
  for (size_t i = 0; i < old_keys.size(); ++i)
    if (old_keys[i] != kEmpty) put(int32_t(old_keys[i] >> 32), int32_t(uint32_t(old_keys[i])), old_vals[i]);
}

void MergeTable::grow() { reserve(std::max<size_t>(16, size_ * 2 + 2)); }

void MergeTable::put(int32_t a, int32_t b, Merge m) {
  if ((size_ + 1) * 2 > keys_.size()) grow();
  uint64_t key = pack(a, b);
  for (size_t i = slot(key);; i = (i + 1) & mask_) {
    if (keys_[i] == key) {
      vals_[i] = m;
      return;
    }
    if (keys_[i] == kEmpty) {
      keys_[i] = key;
      vals_[i] = m;
      ++size_;
      return;
    }
  }
}

}  // namespace ds::tok
