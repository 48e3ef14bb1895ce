// Finiteness of checkpoint tensors, checked at load on the bytes as stored: a NaN or infinity in a
// weight would otherwise load silently and make every request fail at sampling.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tensor/dtype.h"

namespace ds::model {

// The first element of `count` elements of `dtype` at `data` that is NaN or infinite (F32, BF16, F16;
// FP8 e4m3 has no infinity, its NaN is the bit pattern S.1111.111); nullopt when all are finite.
// Multi-threaded; other dtypes (integers) are never non-finite.
std::optional<int64_t> first_non_finite(const void* data, DType dtype, int64_t count);

// Throws ds::Error naming the tensor, its file and the first bad element (as [row, col] of a matrix).
void check_finite(const std::string& name, const std::string& file, const void* data, DType dtype,
                  const std::vector<int64_t>& shape);

}  // namespace ds::model
