#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "util/error.h"

namespace ds::model {
namespace {

using nlohmann::json;

std::string show(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

// Parses the header JSON, refusing duplicate keys (nlohmann would silently keep the last one)
// and nesting deeper than a safetensors header has (root -> entry -> shape list).
json parse_header_json(const char* begin, const char* end, const std::string& file) {
  std::vector<std::set<std::string>> keys;  // one set per open object
  auto on_event = [&](int depth, json::parse_event_t ev, json& parsed) {
    switch (ev) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (depth >= 3) fail("{}: safetensors header nests deeper than a header can", file);
        if (ev == json::parse_event_t::object_start) keys.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case json::parse_event_t::key:
        if (!keys.empty() && !keys.back().insert(parsed.get<std::string>()).second)
          fail("{}: safetensors header has the key '{}' twice", file, parsed.get<std::string>());
        break;
      default:
        break;
    }
    return true;
  };
  try {
    return json::parse(begin, end, on_event);
  } catch (const json::exception& e) {
    fail("{}: safetensors header is not valid JSON: {}", file, e.what());
  }
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// A JSON value that is a non-negative integer.
bool as_u64(const json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    *out = uint64_t(v.get<int64_t>());
    return true;
  }
  return false;
}

void check_metadata(const json& meta, const std::string& file) {
  if (!meta.is_object()) fail("{}: safetensors '__metadata__' must be an object, got {}", file, show(meta));
  for (auto& [k, v] : meta.items())
    if (!v.is_string())
      fail("{}: safetensors '__metadata__' value of '{}' must be a string, got {}", file, k, show(v));
}

TensorInfo parse_entry(const std::string& name, const json& e, const uint8_t* buf, uint64_t buf_size,
                       const std::string& file) {
  TensorInfo t;
  t.name = name;
  t.file = file;
  if (!e.is_object()) fail("{}: tensor '{}': header entry must be an object, got {}", file, name, show(e));
  for (auto& [k, v] : e.items())
    if (k != "dtype" && k != "shape" && k != "data_offsets")
      fail("{}: tensor '{}': unknown header key '{}'", file, name, k);

  if (!e.contains("dtype") || !e.at("dtype").is_string())
    fail("{}: tensor '{}': missing or non-string 'dtype'", file, name);
  const std::string& dt = e.at("dtype").get_ref<const std::string&>();
  if (!parse_dtype(dt, &t.dtype)) fail("{}: tensor '{}': unsupported dtype \"{}\"", file, name, dt);

  if (!e.contains("shape") || !e.at("shape").is_array())
    fail("{}: tensor '{}': missing 'shape' list", file, name);
  uint64_t numel = 1;
  for (const json& d : e.at("shape")) {
    uint64_t n;
    if (!as_u64(d, &n) || n > uint64_t(INT64_MAX))
      fail("{}: tensor '{}': shape {} must hold non-negative integers", file, name, show(e.at("shape")));
    if (__builtin_mul_overflow(numel, n, &numel))
      fail("{}: tensor '{}': shape {} has too many elements", file, name, show(e.at("shape")));
    t.shape.push_back(int64_t(n));
  }
  uint64_t expect;
  if (__builtin_mul_overflow(numel, uint64_t(dtype_size(t.dtype)), &expect) || expect > uint64_t(INT64_MAX))
    fail("{}: tensor '{}': shape {} is too large", file, name, show(e.at("shape")));

  const json* off = e.contains("data_offsets") ? &e.at("data_offsets") : nullptr;
  uint64_t begin, end;
  if (!off || !off->is_array() || off->size() != 2 || !as_u64((*off)[0], &begin) || !as_u64((*off)[1], &end))
    fail("{}: tensor '{}': 'data_offsets' must be [begin, end] of non-negative integers", file, name);
  if (begin > end) fail("{}: tensor '{}': data_offsets [{}, {}] end before they begin", file, name, begin, end);
  if (end > buf_size)
    fail("{}: tensor '{}': data_offsets [{}, {}] run past the end of the data ({} bytes; file truncated?)",
         file, name, begin, end, buf_size);
  if (end - begin != expect)
    fail("{}: tensor '{}': {} {} needs {} bytes but data_offsets [{}, {}] hold {}", file, name, dt,
         show(e.at("shape")), expect, begin, end, end - begin);
  t.data = buf + begin;
  t.nbytes = expect;
  return t;
}

}  // namespace

std::vector<TensorInfo> parse_safetensors(const uint8_t* data, uint64_t size, const std::string& file) {
  if (size < 8) fail("{}: too small to be a safetensors file ({} bytes)", file, size);
  uint64_t header_len = read_u64_le(data);
  if (header_len > kMaxSafetensorsHeader)
    fail("{}: safetensors header length {} is absurd (limit {})", file, header_len, kMaxSafetensorsHeader);
  if (header_len > size - 8)
    fail("{}: safetensors header length {} exceeds the file size {} (file truncated?)", file, header_len, size);

  const char* h = reinterpret_cast<const char*>(data + 8);
  json header = parse_header_json(h, h + header_len, file);
  if (!header.is_object()) fail("{}: safetensors header must be a JSON object", file);

  const uint8_t* buf = data + 8 + header_len;
  uint64_t buf_size = size - 8 - header_len;
  std::vector<TensorInfo> tensors;
  tensors.reserve(header.size());
  for (auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      check_metadata(entry, file);
      continue;
    }
    tensors.push_back(parse_entry(name, entry, buf, buf_size, file));
  }

  // Data-offset order; then no two non-empty tensors may share a byte.
  std::sort(tensors.begin(), tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.data != b.data ? a.data < b.data : a.nbytes < b.nbytes;
  });
  const TensorInfo* prev = nullptr;
  for (const TensorInfo& t : tensors) {
    if (t.nbytes == 0) continue;
    if (prev && t.data < prev->data + prev->nbytes)
      fail("{}: tensors '{}' and '{}' overlap in the data buffer (bytes [{}, {}) and [{}, {}))", file,
           prev->name, t.name, prev->data - buf, prev->data - buf + prev->nbytes, t.data - buf,
           t.data - buf + t.nbytes);
    prev = &t;
  }
  return tensors;
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open {}: {}", path, std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: not a regular file", path);
  }
  SafetensorsFile f;
  f.path_ = path;
  f.size_ = uint64_t(st.st_size);
  if (f.size_ < 8) {
    ::close(fd);
    fail("{}: too small to be a safetensors file ({} bytes)", path, f.size_);
  }
  void* m = mmap(nullptr, f.size_, PROT_READ, MAP_PRIVATE, fd, 0);
  int err = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (m == MAP_FAILED) fail("cannot map {}: {}", path, std::strerror(err));
  f.map_ = m;
  f.tensors_ = parse_safetensors(static_cast<const uint8_t*>(f.map_), f.size_, path);
  return f;
}

void SafetensorsFile::advise_sequential() const {
  if (map_) madvise(map_, size_, MADV_SEQUENTIAL);  // advice only: failure changes nothing
}

void prefetch(const TensorInfo& t) {
  if (!t.data || t.nbytes == 0) return;
  uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  uintptr_t begin = uintptr_t(t.data) & ~(page - 1);
  madvise(reinterpret_cast<void*>(begin), uintptr_t(t.data) + t.nbytes - begin, MADV_WILLNEED);
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept
    : path_(std::move(o.path_)), map_(o.map_), size_(o.size_), tensors_(std::move(o.tensors_)) {
  o.map_ = nullptr;
  o.size_ = 0;
}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
  if (this != &o) {
    release();
    path_ = std::move(o.path_);
    map_ = o.map_;
    size_ = o.size_;
    tensors_ = std::move(o.tensors_);
    o.map_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() { release(); }

void SafetensorsFile::release() {
  if (map_) munmap(map_, size_);
  map_ = nullptr;
}

}  // namespace ds::model
