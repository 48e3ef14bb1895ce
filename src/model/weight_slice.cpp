#include "model/weight_slice.h"

#include <cstring>

#include "util/error.h"

namespace ds::model {

namespace {
using backend::HostTensor;
constexpr int64_t kBlock = 128;  // DeepSeek's FP8 weight scale blocks

const char* at(const HostTensor& t, int64_t row, int64_t col) {
  return static_cast<const char*>(t.data) + (row * t.shape[1] + col) * int64_t(dtype_size(t.dtype));
}

void check_range(const HostTensor& t, const Shard& s) {
  const int64_t n = s.axis == Shard::Axis::Rows ? t.shape[0] : t.shape.at(1);
  DS_CHECK(s.begin >= 0 && s.begin < s.end && s.end <= n, "slice [{}, {}) of '{}' outside its {} {}", s.begin, s.end,
           t.name, n, s.axis == Shard::Axis::Rows ? "rows" : "columns");
}

// Rows [b, e) x columns [c0, c1) of a 2-D tensor into `buf`.
HostTensor gather(const HostTensor& t, int64_t b, int64_t e, int64_t c0, int64_t c1, std::vector<char>& buf) {
  const size_t es = dtype_size(t.dtype), row_bytes = size_t(c1 - c0) * es;
  buf.resize(row_bytes * size_t(e - b));
  for (int64_t r = b; r < e; ++r) std::memcpy(buf.data() + size_t(r - b) * row_bytes, at(t, r, c0), row_bytes);
  return HostTensor{t.name, t.dtype, {e - b, c1 - c0}, buf.data()};
}

bool on_blocks(int64_t b, int64_t e, int64_t n) { return b % kBlock == 0 && (e % kBlock == 0 || e == n); }

// w[r, c] * scale[r / 128, c / 128] for the slice, in full-tensor coordinates.
HostTensor dequantise(const HostTensor& w, const HostTensor& scale, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                      std::vector<char>& buf) {
  buf.resize(sizeof(float) * size_t((r1 - r0) * (c1 - c0)));
  auto* out = reinterpret_cast<float*>(buf.data());
  const int64_t sc = scale.shape[1];
  auto scale_at = [&](int64_t br, int64_t bc) {
    const void* p = static_cast<const char*>(scale.data) + (br * sc + bc) * int64_t(dtype_size(scale.dtype));
    switch (scale.dtype) {
      case DType::F32: return *static_cast<const float*>(p);
      case DType::BF16: return bf16_to_f32(*static_cast<const uint16_t*>(p));
      case DType::F16: return f16_to_f32(*static_cast<const uint16_t*>(p));
      default: fail("scale of '{}' has dtype {}", w.name, dtype_name(scale.dtype));
    }
  };
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t c = c0; c < c1; ++c)
      *out++ = fp8e4m3_to_f32(*reinterpret_cast<const uint8_t*>(at(w, r, c))) * scale_at(r / kBlock, c / kBlock);
  return HostTensor{w.name, DType::F32, {r1 - r0, c1 - c0}, buf.data()};
}
}  // namespace

SlicedTensor slice_tensor(const HostTensor& t, const Shard& s) {
  SlicedTensor out;
  if (s.axis == Shard::Axis::Whole) {
    out.w = t;
    return out;
  }
  check_range(t, s);
  const int64_t row_elems = t.shape.size() == 1 ? 1 : t.shape[1];
  if (s.axis == Shard::Axis::Rows) {
    out.w = t;
    out.w.shape[0] = s.end - s.begin;
    out.w.data = static_cast<const char*>(t.data) + s.begin * row_elems * int64_t(dtype_size(t.dtype));
  } else {
    DS_CHECK(t.shape.size() == 2, "column slice of the {}-D tensor '{}'", t.shape.size(), t.name);
    out.w = gather(t, 0, t.shape[0], s.begin, s.end, out.buf_w);
  }
  return out;
}

SlicedTensor slice_linear(const HostTensor& w, const HostTensor* scale, const Shard& s) {
  DS_CHECK(w.shape.size() == 2, "linear weight '{}' must be 2-D", w.name);
  if (!scale || s.axis == Shard::Axis::Whole) {
    SlicedTensor out = slice_tensor(w, s);
    if (scale) out.scale = *scale;
    return out;
  }
  check_range(w, s);
  const bool rows = s.axis == Shard::Axis::Rows;
  const int64_t r0 = rows ? s.begin : 0, r1 = rows ? s.end : w.shape[0];
  const int64_t c0 = rows ? 0 : s.begin, c1 = rows ? w.shape[1] : s.end;
  SlicedTensor out;
  if (!on_blocks(s.begin, s.end, rows ? w.shape[0] : w.shape[1])) {
    out.w = dequantise(w, *scale, r0, r1, c0, c1, out.buf_w);
    return out;
  }
  out.w = rows ? slice_tensor(w, s).w : gather(w, r0, r1, c0, c1, out.buf_w);
  const int64_t b0 = s.begin / kBlock, b1 = (s.end + kBlock - 1) / kBlock;
  out.scale = rows ? gather(*scale, b0, b1, 0, scale->shape[1], out.buf_s)
                   : gather(*scale, 0, scale->shape[0], b0, b1, out.buf_s);
  return out;
}

}  // namespace ds::model
