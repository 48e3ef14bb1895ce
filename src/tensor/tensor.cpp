#include "tensor/tensor.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdlib>
#include <cstring>

#include "util/error.h"

namespace ds {

namespace {
int64_t product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    DS_CHECK(d >= 0, "negative tensor dimension {}", d);
    n *= d;
  }
  return n;
}

std::shared_ptr<Storage> cpu_alloc(size_t nbytes) {
  auto s = std::make_shared<Storage>();
  size_t rounded = (nbytes + 63) / 64 * 64;
  s->ptr = std::aligned_alloc(64, rounded ? rounded : 64);
  DS_CHECK(s->ptr != nullptr, "out of host memory allocating {} bytes", nbytes);
  s->nbytes = nbytes;
  s->deleter = [](void* p) { std::free(p); };
  return s;
}
}  // namespace

int64_t Tensor::numel() const { return product(shape_); }

Tensor Tensor::empty(std::vector<int64_t> shape, DType dtype) {
  Tensor t;
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  t.storage_ = cpu_alloc(size_t(product(t.shape_)) * dtype_size(dtype));
  return t;
}

Tensor Tensor::zeros(std::vector<int64_t> shape, DType dtype) {
  Tensor t = empty(std::move(shape), dtype);
  std::memset(t.raw(), 0, t.nbytes());
  return t;
}

Tensor Tensor::borrow(void* ptr, std::vector<int64_t> shape, DType dtype, Device device) {
  Tensor t;
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  t.storage_ = std::make_shared<Storage>();
  t.storage_->ptr = ptr;
  t.storage_->nbytes = size_t(product(t.shape_)) * dtype_size(dtype);
  t.storage_->device = device;
  return t;
}

Tensor Tensor::from_storage(std::shared_ptr<Storage> s, std::vector<int64_t> shape, DType dtype) {
  Tensor t;
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  DS_CHECK(size_t(product(t.shape_)) * dtype_size(dtype) <= s->nbytes, "storage too small for tensor");
  t.storage_ = std::move(s);
  return t;
}

float* Tensor::f32() const {
  DS_CHECK(dtype_ == DType::F32 && device() == Device::CPU, "expected a CPU F32 tensor, got {}", describe());
  return data<float>();
}

int32_t* Tensor::i32() const {
  DS_CHECK(dtype_ == DType::I32 && device() == Device::CPU, "expected a CPU I32 tensor, got {}", describe());
  return data<int32_t>();
}

Tensor Tensor::view(std::vector<int64_t> shape) const {
  DS_CHECK(product(shape) == numel(), "cannot view {} as [{}]", describe(), fmt::join(shape, ", "));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::rows(int64_t begin, int64_t end) const {
  DS_CHECK(ndim() >= 1 && 0 <= begin && begin <= end && end <= shape_[0], "bad row range [{}, {}) of {}", begin,
           end, describe());
  Tensor t = *this;
  t.offset_ += size_t(begin * row_size()) * dtype_size(dtype_);
  t.shape_[0] = end - begin;
  return t;
}

std::string Tensor::describe() const { return fmt::format("{}[{}]", dtype_name(dtype_), fmt::join(shape_, ", ")); }

}  // namespace ds
