#include "util/host_buffer_pool.h"

#include <bit>

#include "util/error.h"

namespace ds {

std::shared_ptr<HostBufferPool> HostBufferPool::make(Alloc alloc, size_t keep_bytes, size_t lend_limit) {
  return std::shared_ptr<HostBufferPool>(new HostBufferPool(std::move(alloc), keep_bytes, lend_limit));
}

size_t HostBufferPool::class_size(size_t bytes) {
  constexpr size_t kMin = size_t(64) << 10;
  if (bytes <= kMin) return kMin;
  // The power of two below `bytes`, then quarter steps up to the next one.
  const size_t p = std::bit_floor(bytes), step = p / 4;
  return p + (bytes - p + step - 1) / step * step;
}

HostBytes HostBufferPool::take(size_t bytes) {
  const size_t cls = class_size(bytes);
  HostBytes b;
  {
    std::lock_guard lk(mu_);
    DS_CHECK(stats_.lent_bytes + cls <= lend_limit_,
             "{} MB of host buffers are out already (waiting to be sent or taken); {} MB more would pass the "
             "limit of {} MB", stats_.lent_bytes >> 20, cls >> 20, lend_limit_ >> 20);
    auto it = kept_.find(cls);
    if (it != kept_.end() && !it->second.empty()) {
      b = std::move(it->second.back());
      it->second.pop_back();
      stats_.kept_bytes -= cls;
      ++stats_.reused;
    } else {
      ++stats_.made;
    }
    stats_.lent_bytes += cls;
  }
  if (!b.capacity()) {
    try {
      b = alloc_(cls);
    } catch (...) {
      std::lock_guard lk(mu_);
      stats_.lent_bytes -= cls;
      throw;
    }
  }
  // The lent buffer's release hands the underlying one back (or frees it, when the pool is gone).
  auto held = std::make_shared<HostBytes>(std::move(b));
  std::weak_ptr<HostBufferPool> pool = weak_from_this();
  HostBytes lent(held->data(), held->capacity(), [held, pool](uint8_t*, size_t) {
    if (auto p = pool.lock()) p->give_back(std::move(*held));
  });
  lent.resize(bytes);
  return lent;
}

void HostBufferPool::give_back(HostBytes b) {
  std::lock_guard lk(mu_);
  const size_t cap = b.capacity();
  stats_.lent_bytes -= cap;
  if (stats_.kept_bytes + cap > keep_bytes_) return;  // over the budget: freed as `b` goes
  b.resize(cap);
  stats_.kept_bytes += cap;
  kept_[cap].push_back(std::move(b));
}

HostBufferPool::Stats HostBufferPool::stats() const {
  std::lock_guard lk(mu_);
  return stats_;
}

}  // namespace ds
