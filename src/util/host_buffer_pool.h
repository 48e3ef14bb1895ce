// Host buffers lent and taken back, so that large page-locked buffers are made once and reused: pinning
// memory (cudaHostAlloc) costs far more than copying into it, and a fresh pageable buffer costs its page
// faults and zero fill (what packing a prompt's KV spent most of its time on, docs/PERF.md). Buffers come in
// size classes (4 per power of two: at most 25% unused); a returned buffer is kept for the next request of its
// class while the kept bytes stay within `keep_bytes`, else freed. Thread-safe: the engine takes buffers, the
// transport's thread drops them. With a lending limit, take() refuses (throws ds::Error) a buffer that would
// put more than that many bytes out at once: a bound on what the owner holds for slow or absent takers.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "util/host_bytes.h"

namespace ds {

class HostBufferPool : public std::enable_shared_from_this<HostBufferPool> {
 public:
  using Alloc = std::function<HostBytes(size_t bytes)>;
  struct Stats {
    size_t lent_bytes = 0;  // capacity of the buffers out now
    size_t kept_bytes = 0;  // capacity of the buffers waiting for reuse
    int64_t made = 0;       // buffers allocated
    int64_t reused = 0;     // lendings served by a kept buffer
  };

  // `alloc` makes a buffer of a class's size; it is called by take(), on the caller's thread.
  static std::shared_ptr<HostBufferPool> make(Alloc alloc, size_t keep_bytes, size_t lend_limit = SIZE_MAX);
  // A buffer of `bytes` (size() == bytes; its capacity is the class's). Giving it back is dropping it.
  HostBytes take(size_t bytes);
  Stats stats() const;
  // The size class that holds `bytes`: at least 64 KiB, then 4 steps per power of two.
  static size_t class_size(size_t bytes);

 private:
  HostBufferPool(Alloc alloc, size_t keep_bytes, size_t lend_limit)
      : alloc_(std::move(alloc)), keep_bytes_(keep_bytes), lend_limit_(lend_limit) {}
  void give_back(HostBytes b);

  Alloc alloc_;
  const size_t keep_bytes_, lend_limit_;
  mutable std::mutex mu_;
  std::map<size_t, std::vector<HostBytes>> kept_;  // by capacity
  Stats stats_;
};

}  // namespace ds
