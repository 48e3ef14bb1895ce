// An owned run of host bytes whose owner decides how it is given back: a std::vector's storage, page-locked
// memory from a device backend, or a buffer lent by a pool (HostBufferPool) that returns it when dropped.
// Prefill/decode disaggregation moves a request's packed KV through the engine, the bootstrap and the
// transport as one of these, so that a buffer the device copied into is the one UCX sends from.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <utility>
#include <vector>

#include "util/error.h"

namespace ds {

class HostBytes {
 public:
  using Release = std::function<void(uint8_t* data, size_t capacity)>;
  HostBytes() = default;
  // `release` runs once, when this is dropped (on whichever thread drops it).
  HostBytes(uint8_t* data, size_t size, Release release) : data_(data), size_(size), cap_(size), release_(std::move(release)) {}
  // Plain memory, not zero-filled (new[] of bytes leaves them as they are): for bytes about to be written over.
  static HostBytes allocate(size_t size) {
    return HostBytes(new uint8_t[size ? size : 1], size, [](uint8_t* p, size_t) { delete[] p; });
  }
  static HostBytes from_vector(std::vector<uint8_t> v) {
    auto* owned = new std::vector<uint8_t>(std::move(v));
    return HostBytes(owned->data(), owned->size(), [owned](uint8_t*, size_t) { delete owned; });
  }
  HostBytes(HostBytes&& o) noexcept { *this = std::move(o); }
  HostBytes& operator=(HostBytes&& o) noexcept {
    if (this != &o) {
      reset();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
      cap_ = std::exchange(o.cap_, 0);
      release_ = std::move(o.release_);
      o.release_ = nullptr;
    }
    return *this;
  }
  HostBytes(const HostBytes&) = delete;
  HostBytes& operator=(const HostBytes&) = delete;
  ~HostBytes() { reset(); }

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  size_t capacity() const { return cap_; }
  bool empty() const { return size_ == 0; }
  std::span<const uint8_t> span() const { return {data_, size_}; }
  // The first n bytes only (n <= capacity()); a pool's buffers are often larger than asked for.
  void resize(size_t n) {
    DS_CHECK(n <= cap_, "HostBytes: {} bytes asked of a buffer of {}", n, cap_);
    size_ = n;
  }

 private:
  void reset() {
    if (release_) release_(data_, cap_);
    release_ = nullptr;
    data_ = nullptr;
    size_ = cap_ = 0;
  }
  uint8_t* data_ = nullptr;
  size_t size_ = 0, cap_ = 0;
  Release release_;
};

}  // namespace ds
