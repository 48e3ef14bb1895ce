#include "model/weights_finite.h"

#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "util/error.h"

namespace ds::model {
namespace {

// Exponent all ones: infinity or NaN. Integer tests on the bits: no float conversion, no FP traps.
// Safetensors data need not be aligned for its dtype: elements are read with memcpy.
template <typename U, U kMask>
int64_t scan(const uint8_t* p, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    U v;
    std::memcpy(&v, p + i * int64_t(sizeof(U)), sizeof(U));
    if ((v & kMask) == kMask) return i;
  }
  return -1;
}

// Lanes of a 64-bit word whose exponent bits (M) are all ones: adding the lowest exponent bit (U)
// carries into the lane's top bit (T) exactly then, and never across lanes (masked lanes stay below
// T). One OR per 8 bytes and no early exit, so the loop vectorises and runs at memory speed.
bool any_exponent_all_ones(const uint8_t* p, int64_t nbytes, uint64_t M, uint64_t U, uint64_t T) {
  uint64_t acc = 0;
  int64_t i = 0;
  for (; i + 8 <= nbytes; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    acc |= ((w & M) + U) & T;
  }
  if (i < nbytes) {  // the tail, zero-padded (a zero lane is finite)
    uint64_t w = 0;
    std::memcpy(&w, p + i, size_t(nbytes - i));
    acc |= ((w & M) + U) & T;
  }
  return acc != 0;
}

int64_t scan_range(const void* data, DType dtype, int64_t begin, int64_t end) {
  const auto* p = static_cast<const uint8_t*>(data);
  const int64_t size = int64_t(dtype_size(dtype));
  const uint8_t* b = p + begin * size;
  const int64_t nbytes = (end - begin) * size;
  bool any = false;
  switch (dtype) {
    case DType::F32: any = any_exponent_all_ones(b, nbytes, 0x7F8000007F800000ull, 0x0080000000800000ull, 0x8000000080000000ull); break;
    case DType::BF16: any = any_exponent_all_ones(b, nbytes, 0x7F807F807F807F80ull, 0x0080008000800080ull, 0x8000800080008000ull); break;
    case DType::F16: any = any_exponent_all_ones(b, nbytes, 0x7C007C007C007C00ull, 0x0400040004000400ull, 0x8000800080008000ull); break;
    case DType::F8_E4M3: any = any_exponent_all_ones(b, nbytes, 0x7F7F7F7F7F7F7F7Full, 0x0101010101010101ull, 0x8080808080808080ull); break;
    default: return -1;
  }
  if (!any) return -1;
  switch (dtype) {  // rare: find which element
    case DType::F32: return scan<uint32_t, 0x7F800000u>(p, begin, end);
    case DType::BF16: return scan<uint16_t, 0x7F80u>(p, begin, end);
    case DType::F16: return scan<uint16_t, 0x7C00u>(p, begin, end);
    default: return scan<uint8_t, 0x7Fu>(p, begin, end);
  }
}

}  // namespace

std::optional<int64_t> first_non_finite(const void* data, DType dtype, int64_t count) {
  // Blocks of 1M elements keep each thread on its own pages.
  constexpr int64_t kBlock = 1 << 20;
  const int64_t blocks = (count + kBlock - 1) / kBlock;
  int64_t first = -1;
#pragma omp parallel for schedule(dynamic, 1) if (blocks > 1)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t at = scan_range(data, dtype, b * kBlock, std::min(count, (b + 1) * kBlock));
    if (at >= 0) {
#pragma omp critical(ds_first_non_finite)
      if (first < 0 || at < first) first = at;
    }
  }
  if (first < 0) return std::nullopt;
  return first;
}

void check_finite(const std::string& name, const std::string& file, const void* data, DType dtype,
                  const std::vector<int64_t>& shape) {
  int64_t count = 1;
  for (int64_t d : shape) count *= d;
  const auto bad = first_non_finite(data, dtype, count);
  if (!bad) return;
  std::string where = shape.size() == 2 ? fmt::format("[{}, {}]", *bad / shape[1], *bad % shape[1])
                                        : fmt::format("[{}] (flat)", *bad);
  fail("tensor '{}' in {} holds a NaN or infinite value at {}: the checkpoint is corrupt (every request would "
       "fail with non-finite logits)",
       name, file, where);
}

}  // namespace ds::model
