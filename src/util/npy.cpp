#include "util/npy.h"

#include <fmt/format.h>

#include <fstream>
#include <regex>

#include "util/error.h"

namespace ds {

void write_npy_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape) {
  std::string dims;
  int64_t n = 1;
  for (auto d : shape) {
    dims += fmt::format("{}, ", d);
    n *= d;
  }
  if (shape.size() > 1) dims.resize(dims.size() - 2);
  std::string header = fmt::format("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}", dims);
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::ofstream f(path, std::ios::binary);
  DS_CHECK(f.good(), "cannot write {}", path);
  f.write("\x93NUMPY\x01\x00", 8);
  uint16_t len = uint16_t(header.size());
  f.write(reinterpret_cast<const char*>(&len), 2);
  f.write(header.data(), std::streamsize(header.size()));
  f.write(reinterpret_cast<const char*>(data), std::streamsize(n * sizeof(float)));
  DS_CHECK(f.good(), "error writing {}", path);
}

NpyArray read_npy_f32(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  DS_CHECK(f.good(), "cannot open {}", path);
  char magic[8];
  f.read(magic, 8);
  DS_CHECK(f.good() && std::string(magic, 6) == "\x93NUMPY", "{} is not a .npy file", path);
  uint32_t len = 0;
  if (magic[6] == 1) {
    uint16_t l16;
    f.read(reinterpret_cast<char*>(&l16), 2);
    len = l16;
  } else {
    f.read(reinterpret_cast<char*>(&len), 4);
  }
  std::string header(len, '\0');
  f.read(header.data(), len);
  DS_CHECK(header.find("'<f4'") != std::string::npos && header.find("'fortran_order': False") != std::string::npos,
           "{}: only little-endian float32 C-order arrays are supported ({})", path, header);
  std::smatch m;
  DS_CHECK(std::regex_search(header, m, std::regex(R"('shape': \(([^)]*)\))")), "{}: no shape in header", path);
  NpyArray a;
  int64_t n = 1;
  std::string dims = m[1];
  static const std::regex number(R"(\d+)");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), number); it != std::sregex_iterator(); ++it) {
    a.shape.push_back(std::stoll(it->str()));
    n *= a.shape.back();
  }
  a.data.resize(size_t(n));
  f.read(reinterpret_cast<char*>(a.data.data()), std::streamsize(n * sizeof(float)));
  DS_CHECK(f.gcount() == std::streamsize(n * sizeof(float)), "{}: truncated data", path);
  return a;
}

}  // namespace ds
