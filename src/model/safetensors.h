// safetensors files: a strict header parser and a read-only memory mapping.
// Format: 8-byte little-endian header length N, N bytes of JSON header, then the data buffer;
// each header entry gives dtype, shape and [begin, end) offsets into the data buffer.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/dtype.h"

namespace ds::model {

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // into the mapped file; valid while the file object lives
  uint64_t nbytes = 0;
  std::string file;               // the file it came from, for error messages

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

// Headers larger than this are refused (the reference library uses the same bound).
inline constexpr uint64_t kMaxSafetensorsHeader = 100'000'000;

// Parses and validates the header of a whole safetensors file held at [data, data + size).
// Tensors come back in data-offset order. Throws ds::Error naming file_label and the tensor.
std::vector<TensorInfo> parse_safetensors(const uint8_t* data, uint64_t size, const std::string& file_label);

// Asks the kernel to start reading a tensor's pages in the background (MADV_WILLNEED).
void prefetch(const TensorInfo& t);

// A safetensors file mapped read-only (MAP_PRIVATE): the tensor data is never copied, pages
// are read from disk on first touch. Stays mapped until destroyed.
class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::string& path);

  SafetensorsFile(SafetensorsFile&& o) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& o) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  // For a one-pass copy of the weights (e.g. upload to the GPU): stronger readahead, and the
  // pages are reclaimed first. Not for mappings that serve as live weights (CPU backend).
  void advise_sequential() const;

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  uint64_t file_size() const { return size_; }

 private:
  SafetensorsFile() = default;
  void release();

  std::string path_;
  void* map_ = nullptr;
  uint64_t size_ = 0;
  std::vector<TensorInfo> tensors_;
};

}  // namespace ds::model
