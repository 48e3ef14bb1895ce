// Backend's default raw copies: host-memory backends move bytes with memcpy (device backends override).
#include <cstring>

#include "backend/backend.h"

namespace ds::backend {

void Backend::copy_bytes_to_host(void* dst, const Tensor& src) {
  DS_CHECK(src.device() == Device::CPU, "the {} backend cannot read device memory", name());
  std::memcpy(dst, src.raw(), src.nbytes());
}

void Backend::copy_bytes_from_host(Tensor& dst, const void* src) {
  DS_CHECK(dst.device() == Device::CPU, "the {} backend cannot write device memory", name());
  std::memcpy(dst.raw(), src, dst.nbytes());
}

}  // namespace ds::backend
