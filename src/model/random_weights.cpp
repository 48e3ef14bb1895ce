#include "model/random_weights.h"
#include "model/weight_slice.h"

#include <algorithm>
#include <array>
#include <cmath>
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

// out[i] = table[byte i of the counter-based stream of `key`]: any order, any thread, same result.
template <typename T>
void fill_from_table(T* out, int64_t n, const std::array<T, 256>& table, uint64_t key) {
  const int64_t words = (n + 7) / 8;
#pragma omp parallel for schedule(static)
  for (int64_t j = 0; j < words; ++j) {
    uint64_t r = splitmix(key ^ splitmix(uint64_t(j)));
    const int64_t i1 = std::min(n, j * 8 + 8);
    for (int64_t i = j * 8; i < i1; ++i, r >>= 8) out[i] = table[r & 0xff];
  }
}

class RandomSource final : public WeightSource {
 public:
  RandomSource(const ModelConfig& c, backend::Backend& be, uint64_t seed, bool with_mtp)
      : c_(c), be_(be), seed_(seed), progress_("generating weights", total_bytes(c, with_mtp), "B") {
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
      bytes_.resize(size_t(N * K));
      fill_from_table(bytes_.data(), N * K, table, key);
      const int64_t nb = (N + 127) / 128, kb = (K + 127) / 128;
      scales_.assign(size_t(nb * kb), float(4.0 * sigma / 448.0));
      backend::HostTensor hw{name, DType::F8_E4M3, s.shape, bytes_.data()};
      backend::HostTensor hs{name + "_scale_inv", DType::F32, {nb, kb}, scales_.data()};
      SlicedTensor sl = slice_linear(hw, &hs, part);
      w = be_.load_linear(sl.w, sl.scale ? &*sl.scale : nullptr);
      progress_.add(uint64_t(N * K + nb * kb * 4));
    } else {
      w = be_.load_linear(slice_linear(bf16_tensor(name, s.shape, sigma, key), nullptr, part).w, nullptr);
      progress_.add(uint64_t(N * K * 2));
    }
    return w;
  }

  backend::Backend& backend() override { return be_; }

  Tensor f32(const std::string& name, const Shard& part) override {
    const WeightSpec& s = spec(name);
    const uint64_t key = name_key(seed_, name);
    if (s.shape.size() == 2) {  // the embedding: N(0, 1) rows, BF16 as DeepSeek ships it
      Tensor t = be_.load_tensor_f32(slice_tensor(bf16_tensor(name, s.shape, 1.0, key), part).w);
      progress_.add(uint64_t(s.shape[0] * s.shape[1] * 2));
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
    progress_.add(uint64_t(n * 4));
    return be_.load_tensor_f32(slice_tensor(backend::HostTensor{name, DType::F32, s.shape, v.data()}, part).w);
  }

  void finish() { progress_.finish(); }

 private:
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
  backend::HostTensor bf16_tensor(const std::string& name, const std::vector<int64_t>& shape, double sigma,
                                  uint64_t key) {
    const auto& q = normal_quantiles();
    std::array<uint16_t, 256> table{};
    for (size_t b = 0; b < 256; ++b) table[b] = f32_to_bf16(float(q[b] * sigma));
    const int64_t n = shape[0] * shape[1];
    halves_.resize(size_t(n));
    fill_from_table(halves_.data(), n, table, key);
    return backend::HostTensor{name, DType::BF16, shape, halves_.data()};
  }

  const ModelConfig& c_;
  backend::Backend& be_;
  uint64_t seed_;
  Progress progress_;
  std::unordered_map<std::string, WeightSpec> specs_;
  std::vector<uint8_t> bytes_;  // host staging, reused tensor after tensor
  std::vector<uint16_t> halves_;
  std::vector<float> scales_;
};
}  // namespace

ModelWeights random_weights(const ModelConfig& c, backend::Backend& be, uint64_t seed, const TensorParallel& tp,
                            bool with_mtp) {
  RandomSource src(c, be, seed, with_mtp);
  ModelWeights w = assemble_weights(c, with_mtp, src, tp);
  src.finish();
  return w;
}

}  // namespace ds::model
