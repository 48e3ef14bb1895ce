// NumPy .npy files (format 1.0, little-endian float32 / int32, C order): the exchange format for
// logits with reference implementations.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ds {

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data;  // float32 arrays only
};

void write_npy_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape);
NpyArray read_npy_f32(const std::string& path);  // throws ds::Error on anything but '<f4' C-order

}  // namespace ds
