// Fuzzes the safetensors header parser: arbitrary bytes must give tensors or a ds::Error,
// never a crash, and every accepted tensor must lie inside the buffer with the right size.
#include <cstdint>
#include <cstring>
#include <vector>

#include "model/safetensors.h"
#include "util/error.h"

namespace {

void check(const uint8_t* data, uint64_t size) {
  std::vector<ds::model::TensorInfo> tensors;
  try {
    tensors = ds::model::parse_safetensors(data, size, "fuzz");
  } catch (const ds::Error&) {
    return;
  }
  for (const auto& t : tensors) {
    uint64_t n = ds::dtype_size(t.dtype);
    for (int64_t d : t.shape) n *= uint64_t(d);
    if (n != t.nbytes) __builtin_trap();
    if (t.data < data || t.data + t.nbytes > data + size) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // As a whole file.
  check(data, size);
  // As a header behind a valid length prefix, followed by a little tensor data, so the
  // fuzzer gets past the length check to the JSON and offset validation.
  constexpr size_t kData = 64;
  std::vector<uint8_t> file(8 + size + kData, 0);
  for (int i = 0; i < 8; ++i) file[size_t(i)] = uint8_t((uint64_t(size) >> (8 * i)) & 0xff);
  if (size) std::memcpy(file.data() + 8, data, size);
  check(file.data(), file.size());
  return 0;
}
