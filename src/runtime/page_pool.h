// Pages of the KV pools of one model replica, as numbers: which are free and how many users hold
// each. Running requests and the radix cache both hold references, so a prefix page shared by
// several requests returns to the free list only when its last holder releases it.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

namespace ds::runtime {

class PagePool {
 public:
  PagePool(int32_t num_pages, int32_t page_size);

  // n fresh pages, each with reference count 1; nullopt (and nothing taken) if fewer are free.
  std::optional<std::vector<int32_t>> allocate(int32_t n);
  // Drops one reference of each page (the counterpart of allocate/retain).
  void free(const std::vector<int32_t>& pages) { release(pages); }
  void retain(const std::vector<int32_t>& pages);
  void release(const std::vector<int32_t>& pages);
  void retain(int32_t page);
  void release(int32_t page);

  int32_t ref_count(int32_t page) const;
  int32_t num_pages() const { return static_cast<int32_t>(refs_.size()); }
  int32_t page_size() const { return page_size_; }
  int32_t num_free() const { return static_cast<int32_t>(free_.size()); }
  int32_t num_used() const { return num_pages() - num_free(); }
  // Pages needed to hold `tokens` tokens.
  int32_t pages_for(int64_t tokens) const {
    return static_cast<int32_t>((tokens + page_size_ - 1) / page_size_);
  }

 private:
  void check_page(int32_t page) const;

  int32_t page_size_;
  std::vector<int32_t> refs_;  // per page; 0 = on the free list
  std::vector<int32_t> free_;  // a stack: recently freed pages are reused first (warm memory)
};

}  // namespace ds::runtime
