#include "backend/cuda/device_alloc.h"

#include "backend/cuda/cuda_check.h"
#include "util/log.h"

namespace ds::backend::cuda {

DeviceAllocator::~DeviceAllocator() {
  cudaDeviceSynchronize();  // nothing may still run on a block we free
  hold_frees(false);
  empty_cache();
}

size_t DeviceAllocator::round_size(size_t bytes) {
  if (bytes == 0) bytes = 1;
  if (bytes <= (size_t(1) << 20)) {  // small: powers of two from 512 bytes
    size_t r = 512;
    while (r < bytes) r <<= 1;
    return r;
  }
  const size_t g = size_t(2) << 20;  // large: multiples of 2 MiB
  return (bytes + g - 1) / g * g;
}

std::shared_ptr<Storage> DeviceAllocator::allocate(size_t bytes) {
  const size_t r = round_size(bytes);
  void* p = nullptr;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = free_.find(r);
    if (it != free_.end() && !it->second.empty()) {
      p = it->second.back();
      it->second.pop_back();
      st_.cached -= r;
    }
  }
  if (!p) {
    cudaError_t err = cudaMalloc(&p, r);
    if (err == cudaErrorMemoryAllocation) {  // give the cache back to the driver and try once more
      cudaGetLastError();
      cudaDeviceSynchronize();
      empty_cache();
      err = cudaMalloc(&p, r);
    }
    if (err != cudaSuccess)
      fail("CUDA: cannot allocate {} bytes of device memory ({}; in use {:.2f} GiB)", r, cudaGetErrorString(err),
           double(stats().in_use) / (1 << 30));
    std::lock_guard<std::mutex> lk(mu_);
    ++st_.cuda_mallocs;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    st_.in_use += r;
    st_.peak_in_use = std::max(st_.peak_in_use, st_.in_use);
  }
  auto s = std::make_shared<Storage>();
  s->ptr = p;
  s->nbytes = bytes;
  s->device = Device::CUDA;
  std::weak_ptr<DeviceAllocator> self = weak_from_this();
  s->deleter = [self, r](void* ptr) {
    if (auto a = self.lock()) a->release(ptr, r);
    else cudaFree(ptr);
  };
  return s;
}

void DeviceAllocator::release(void* p, size_t rounded) {
  std::lock_guard<std::mutex> lk(mu_);
  st_.in_use -= rounded;
  st_.cached += rounded;
  if (holding_) held_.emplace_back(p, rounded);
  else free_[rounded].push_back(p);
}

void DeviceAllocator::hold_frees(bool on) {
  std::lock_guard<std::mutex> lk(mu_);
  holding_ = on;
  if (on) return;
  for (auto& [p, rounded] : held_) free_[rounded].push_back(p);
  held_.clear();
}

void DeviceAllocator::empty_cache() {
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& [size, v] : free_)
    for (void* p : v) cudaFree(p);
  free_.clear();
  st_.cached = 0;
  for (auto& [p, rounded] : held_) st_.cached += rounded;  // (still possibly in use: kept)
}

DeviceAllocator::Stats DeviceAllocator::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return st_;
}

std::shared_ptr<Storage> persistent_alloc(size_t bytes) {
  void* p = nullptr;
  DS_CUDA_CHECK(cudaMalloc(&p, bytes ? bytes : 1));
  auto s = std::make_shared<Storage>();
  s->ptr = p;
  s->nbytes = bytes;
  s->device = Device::CUDA;
  s->deleter = [](void* ptr) { cudaFree(ptr); };
  return s;
}

}  // namespace ds::backend::cuda
