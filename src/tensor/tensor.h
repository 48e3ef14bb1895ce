// Tensor: a typed, shaped, contiguous row-major view of a buffer on a device.
// Storage is shared (copies of a Tensor alias the same bytes); views (reshape, row slices) are free.
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "tensor/dtype.h"

namespace ds {

enum class Device : uint8_t { CPU, CUDA };

// Owns (or borrows) one allocation. The deleter decides how it is freed (free, cudaFree, nothing for mmap views).
struct Storage {
  void* ptr = nullptr;
  size_t nbytes = 0;
  Device device = Device::CPU;
  std::function<void(void*)> deleter;
  ~Storage() {
    if (deleter && ptr) deleter(ptr);
  }
};

class Tensor {
 public:
  Tensor() = default;
  // New zero-initialised CPU tensor (64-byte aligned).
  static Tensor zeros(std::vector<int64_t> shape, DType dtype);
  // New uninitialised CPU tensor.
  static Tensor empty(std::vector<int64_t> shape, DType dtype);
  // Wraps memory owned elsewhere (e.g. an mmap'd checkpoint); the caller keeps it alive.
  static Tensor borrow(void* ptr, std::vector<int64_t> shape, DType dtype, Device device = Device::CPU);
  // Wraps a storage made by a backend allocator.
  static Tensor from_storage(std::shared_ptr<Storage> s, std::vector<int64_t> shape, DType dtype);

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device : Device::CPU; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int ndim() const { return int(shape_.size()); }
  int64_t dim(int i) const { return shape_[i < 0 ? i + ndim() : i]; }
  int64_t numel() const;
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }
  // Elements per row of the last dimension's parent (product of all dims after the first).
  int64_t row_size() const { return ndim() ? numel() / shape_[0] : 0; }

  void* raw() const { return static_cast<char*>(storage_->ptr) + offset_; }
  template <typename T>
  T* data() const { return static_cast<T*>(raw()); }
  float* f32() const;   // checks dtype F32 and device CPU
  int32_t* i32() const; // checks dtype I32 and device CPU

  // Same bytes, new shape (numel must match).
  Tensor view(std::vector<int64_t> shape) const;
  // Rows [begin, end) of the first dimension.
  Tensor rows(int64_t begin, int64_t end) const;

  std::string describe() const;  // "F32[3, 4]"

 private:
  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;
  std::vector<int64_t> shape_;
  DType dtype_ = DType::F32;
};

}  // namespace ds
