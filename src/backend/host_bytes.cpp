// Backend's default host buffers and row copies: host-memory backends use plain memory and memcpy (device
// backends override).
#include <cstring>

#include "backend/backend.h"

namespace ds::backend {

HostBytes Backend::alloc_host_bytes(size_t bytes) { return HostBytes::allocate(bytes); }

namespace {
size_t checked_row_bytes(const Tensor& pool, const std::vector<int32_t>& rows, const char* op) {
  for (int32_t r : rows) DS_CHECK(r >= 0 && r < pool.dim(0), "{}: row {} outside the pool of {}", op, r, pool.dim(0));
  return size_t(pool.row_size()) * dtype_size(pool.dtype());
}
}  // namespace

void Backend::gather_rows_to_host(void* dst, const Tensor& pool, const std::vector<int32_t>& rows) {
  DS_CHECK(pool.device() == Device::CPU, "the {} backend cannot read device memory", name());
  const size_t rb = checked_row_bytes(pool, rows, "gather_rows_to_host");
  const auto* base = static_cast<const uint8_t*>(pool.raw());
  for (size_t i = 0; i < rows.size(); ++i) std::memcpy(static_cast<uint8_t*>(dst) + i * rb, base + size_t(rows[i]) * rb, rb);
}

void Backend::scatter_rows_from_host(Tensor& pool, const std::vector<int32_t>& rows, const void* src) {
  DS_CHECK(pool.device() == Device::CPU, "the {} backend cannot write device memory", name());
  const size_t rb = checked_row_bytes(pool, rows, "scatter_rows_from_host");
  auto* base = static_cast<uint8_t*>(pool.raw());
  for (size_t i = 0; i < rows.size(); ++i)
    std::memcpy(base + size_t(rows[i]) * rb, static_cast<const uint8_t*>(src) + i * rb, rb);
}

}  // namespace ds::backend
