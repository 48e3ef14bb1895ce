#include "model/random_weights.h"
#include "model/weight_slice.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <optional>
#include <unordered_map>

#include "tensor/dtype.h"
#include "util/error.h"
#include "util/progress.h"

namespace ds::model {

namespace {
uint64_t splitmix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
uint64_t name_key(uint64_t seed, const std::string& name) {
  uint64_t h = splitmix(seed ^ 0x5eedull);
  for (unsigned char ch : name) h = splitmix(h ^ ch);
  return h;
}
double uniform01(uint64_t key, uint64_t i) { return double(splitmix(key ^ splitmix(i)) >> 11) * 0x1.0p-53; }

// Standard normal quantiles at the midpoints of 256 equally likely bins: one random byte becomes one
// normally distributed value. 256 levels are plenty for timing and for sane activations, and a byte
// per element keeps generation at memory speed (tens of GB/s), where make-model's exact normals
// (log, cos per element) would take minutes for a full-width layer.
const std::array<double, 256>& normal_quantiles() {
  static const std::array<double, 256> q = [] {
    std::array<double, 256> t{};
    for (int b = 0; b < 256; ++b) {
      const double p = (b + 0.5) / 256;
      double lo = -10, hi = 10;
      for (int it = 0; it < 100; ++it) {
        const double mid = 0.5 * (lo + hi);
        (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p ? lo : hi) = mid;
      }
      t[size_t(b)] = 0.5 * (lo + hi);
    }
    return t;
  }();
  return q;
}

// out[k] = table[byte i0 + k of the counter-based stream of `key`] for k < n: any order, any thread, any
// part of a tensor alone, same values.
template <typename T>
void fill_range(T* out, int64_t i0, int64_t n, const std::array<T, 256>& table, uint64_t key) {
  for (int64_t i = i0, end = i0 + n; i < end;) {
    const int64_t j = i / 8, stop = std::min(end, j * 8 + 8);
    uint64_t r = splitmix(key ^ splitmix(uint64_t(j))) >> (8 * (i % 8));
    for (; i < stop; ++i, r >>= 8) out[i - i0] = table[r & 0xff];
  }
}

// The part `part` of an [N, K] row-major tensor of the stream, row-major in `out`: what generating the
// whole tensor and cutting it gives, at the cost of the part.
template <typename T>
void fill_part(T* out, int64_t N, int64_t K, const Shard& part, const std::array<T, 256>& table, uint64_t key,
               int threads) {
  const bool cols = part.axis == Shard::Axis::Cols;
  const bool rows = part.axis == Shard::Axis::Rows;
  const int64_t r0 = rows ? part.begin : 0, r1 = rows ? part.end : N;
  const int64_t c0 = cols ? part.begin : 0, width = cols ? part.end - part.begin : K;
  constexpr int64_t kChunk = int64_t(1) << 16;  // elements per task of a row range
  if (cols) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t r = r0; r < r1; ++r) fill_range(out + (r - r0) * width, r * K + c0, width, table, key);
  } else {
    const int64_t n = (r1 - r0) * K, chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t c = 0; c < chunks; ++c)
      fill_range(out + c * kChunk, r0 * K + c * kChunk, std::min(kChunk, n - c * kChunk), table, key);
  }
}

int64_t part_rows(int64_t N, const Shard& p) { return p.axis == Shard::Axis::Rows ? p.end - p.begin : N; }
int64_t part_cols(int64_t K, const Shard& p) { return p.axis == Shard::Axis::Cols ? p.end - p.begin : K; }

class RandomSource final : public WeightSource {
 public:
  // threads: OpenMP threads of this source's generation (the ranks of one process share the cores).
  RandomSource(const ModelConfig& c, backend::Backend& be, uint64_t seed, bool with_mtp, bool show_progress,
               int threads)
      : c_(c), be_(be), seed_(seed), threads_(threads) {
    if (show_progress) progress_.emplace("generating weights", total_bytes(c, with_mtp), "B");
    for (auto& s : weight_manifest(c, with_mtp)) specs_.emplace(s.name, s);
  }

  backend::LinearWeight linear(const std::string& name, const Shard& part) override {
    const WeightSpec& s = spec(name);
    const int64_t N = s.shape[0], K = s.shape[1];
    const double sigma = 1.0 / std::sqrt(double(K));  // unit-RMS outputs for unit-RMS inputs
    const auto& q = normal_quantiles();
    const uint64_t key = name_key(seed_, name);
    backend::LinearWeight w;
    if (is_fp8(c_, s)) {
      // e4m3 codes with ~4 sigma at 448 (the format's largest), and the block scale that undoes it.
      std::array<uint8_t, 256> table{};
      for (size_t b = 0; b < 256; ++b) table[b] = f32_to_fp8e4m3(float(q[b] * 448.0 / 4.0));
      // Only this rank's part is generated where its edges fall on scale blocks: every block holds the same
      // scale, so the part's blocks are its own [ceil(rows / 128), ceil(cols / 128)] (the cut a checkpoint's
      // slice gives). Edges inside a block (tiny test models): the whole tensor, cut as a checkpoint's is.
      const bool own_part = block_aligned(part, part.axis == Shard::Axis::Rows ? N : K);
      const Shard made = own_part ? part : Shard{};
      const int64_t n = part_rows(N, made), k = part_cols(K, made), nb = (n + 127) / 128, kb = (k + 127) / 128;
      bytes_.resize(size_t(n * k));
      fill_part(bytes_.data(), N, K, made, table, key, threads_);
      scales_.assign(size_t(nb * kb), float(4.0 * sigma / 448.0));
      backend::HostTensor hw{name, DType::F8_E4M3, {n, k}, bytes_.data()};
      backend::HostTensor hs{name + "_scale_inv", DType::F32, {nb, kb}, scales_.data()};
      SlicedTensor sl = slice_linear(hw, &hs, own_part ? Shard{} : part);
      w = be_.load_linear(sl.w, sl.scale ? &*sl.scale : nullptr);
      add_progress(uint64_t(N * K + (N + 127) / 128 * ((K + 127) / 128) * 4));
    } else {
      w = be_.load_linear(bf16_part(name, s.shape, part, sigma, key), nullptr);
      add_progress(uint64_t(N * K * 2));
    }
    return w;
  }

  backend::Backend& backend() override { return be_; }

  Tensor f32(const std::string& name, const Shard& part) override {
    const WeightSpec& s = spec(name);
    const uint64_t key = name_key(seed_, name);
    if (s.shape.size() == 2) {  // the embedding: N(0, 1) rows, BF16 as DeepSeek ships it
      Tensor t = be_.load_tensor_f32(bf16_part(name, s.shape, part, 1.0, key));
      add_progress(uint64_t(s.shape[0] * s.shape[1] * 2));
      return t;
    }
    const int64_t n = s.shape[0];
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const double u = uniform01(key, uint64_t(i));
      if (name.ends_with("e_score_correction_bias")) v[size_t(i)] = float(0.05 * (2 * u - 1));
      else if (name.ends_with(".bias")) v[size_t(i)] = float(0.1 * normal_quantiles()[size_t(u * 256)]);
      else v[size_t(i)] = float(1.0 + 0.2 * (2 * u - 1));  // norm weights in [0.8, 1.2]
    }
    add_progress(uint64_t(n * 4));
    return be_.load_tensor_f32(slice_tensor(backend::HostTensor{name, DType::F32, s.shape, v.data()}, part).w);
  }

  void finish() {
    if (progress_) progress_->finish();
  }

 private:
  void add_progress(uint64_t bytes) {
    if (progress_) progress_->add(bytes);
  }
  // A part whose edges are 128-aligned (or the tensor's end) along its axis: FP8 scale blocks stay whole.
  static bool block_aligned(const Shard& p, int64_t extent) {
    return p.axis == Shard::Axis::Whole || (p.begin % 128 == 0 && (p.end % 128 == 0 || p.end == extent));
  }
  static bool is_fp8(const ModelConfig& c, const WeightSpec& s) {
    return c.quant.is_fp8() && s.kind == WeightKind::Linear && s.fp8_in_deepseek;
  }
  static uint64_t total_bytes(const ModelConfig& c, bool with_mtp) {
    uint64_t total = 0;
    for (const auto& s : weight_manifest(c, with_mtp)) {
      uint64_t n = 1;
      for (int64_t d : s.shape) n *= uint64_t(d);
      total += s.shape.size() == 1 ? n * 4 : is_fp8(c, s) ? n : n * 2;
      if (is_fp8(c, s)) total += uint64_t((s.shape[0] + 127) / 128 * ((s.shape[1] + 127) / 128) * 4);
    }
    return total;
  }
  const WeightSpec& spec(const std::string& name) const {
    auto it = specs_.find(name);
    DS_CHECK(it != specs_.end(), "random weights: '{}' is not in the manifest", name);
    return it->second;
  }
  // Part `part` of a BF16 [N, K] tensor of N(0, sigma^2) values.
  backend::HostTensor bf16_part(const std::string& name, const std::vector<int64_t>& shape, const Shard& part,
                                double sigma, uint64_t key) {
    const auto& q = normal_quantiles();
    std::array<uint16_t, 256> table{};
    for (size_t b = 0; b < 256; ++b) table[b] = f32_to_bf16(float(q[b] * sigma));
    const int64_t n = part_rows(shape[0], part), k = part_cols(shape[1], part);
    halves_.resize(size_t(n * k));
    fill_part(halves_.data(), shape[0], shape[1], part, table, key, threads_);
    return backend::HostTensor{name, DType::BF16, {n, k}, halves_.data()};
  }

  const ModelConfig& c_;
  backend::Backend& be_;
  uint64_t seed_;
  int threads_;
  std::optional<Progress> progress_;  // rank 0's only
  std::unordered_map<std::string, WeightSpec> specs_;
  std::vector<uint8_t> bytes_;  // host staging, reused tensor after tensor
  std::vector<uint16_t> halves_;
  std::vector<float> scales_;
};
}  // namespace

ModelWeights random_weights(const ModelConfig& c, backend::Backend& be, uint64_t seed, const TensorParallel& tp,
                            bool with_mtp) {
  // The ranks of a group generate at once (one thread each): each takes its share of the cores rather than
  // all of them (8 ranks x every core would oversubscribe the host 8 times).
  RandomSource src(c, be, seed, with_mtp, tp.rank == 0, std::max(1, omp_get_max_threads() / std::max(1, tp.size)));
  ModelWeights w = assemble_weights(c, with_mtp, src, tp);
  src.finish();
  return w;
}

}  // namespace ds::model
