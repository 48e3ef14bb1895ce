#include "runtime/page_pool.h"

#include <algorithm>

#include "util/error.h"

namespace ds::runtime {

PagePool::PagePool(int32_t num_pages, int32_t page_size) : page_size_(page_size) {
  DS_CHECK(num_pages >= 0, "PagePool: num_pages must be >= 0, got {}", num_pages);
  DS_CHECK(page_size >= 1, "PagePool: page_size must be >= 1, got {}", page_size);
  refs_.assign(num_pages, 0);
  free_.reserve(num_pages);
  // Reversed so that a fresh pool hands out pages 0, 1, 2, ... (easier to read in logs and tests).
  for (int32_t p = num_pages - 1; p >= 0; --p) free_.push_back(p);
}

std::optional<std::vector<int32_t>> PagePool::allocate(int32_t n) {
  DS_CHECK(n >= 0, "PagePool::allocate: negative page count {}", n);
  if (n > num_free()) return std::nullopt;
  std::vector<int32_t> out(free_.end() - n, free_.end());
  std::reverse(out.begin(), out.end());
  free_.resize(free_.size() - n);
  for (int32_t p : out) refs_[p] = 1;
  return out;
}

void PagePool::check_page(int32_t page) const {
  DS_CHECK(page >= 0 && page < num_pages(), "PagePool: page {} out of range [0, {})", page, num_pages());
}

void PagePool::retain(int32_t page) {
  check_page(page);
  DS_CHECK(refs_[page] > 0, "PagePool: retain of free page {}", page);
  ++refs_[page];
}

void PagePool::release(int32_t page) {
  check_page(page);
  DS_CHECK(refs_[page] > 0, "PagePool: double free of page {}", page);
  if (--refs_[page] == 0) free_.push_back(page);
}

// Checked as a whole first, so a bad list leaves the pool unchanged.
void PagePool::retain(const std::vector<int32_t>& pages) {
  for (int32_t p : pages) {
    check_page(p);
    DS_CHECK(refs_[p] > 0, "PagePool: retain of free page {}", p);
  }
  for (int32_t p : pages) ++refs_[p];
}

void PagePool::release(const std::vector<int32_t>& pages) {
  // A page may appear more than once; each occurrence must be covered by a reference.
  for (int32_t p : pages) check_page(p);
  std::vector<int32_t> sorted = pages;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size();) {
    size_t j = i;
    while (j < sorted.size() && sorted[j] == sorted[i]) ++j;
    DS_CHECK(refs_[sorted[i]] >= static_cast<int32_t>(j - i), "PagePool: double free of page {}", sorted[i]);
    i = j;
  }
  for (int32_t p : pages) release(p);
}

int32_t PagePool::ref_count(int32_t page) const {
  check_page(page);
  return refs_[page];
}

}  // namespace ds::runtime
