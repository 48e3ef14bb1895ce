// The attention block's fused per-token kernels (k_kv_fused.cu: Backend::mla_kv_write, indexer_key_write,
// mla_absorb_q_rope) against
//   - the same op with the fusion off on the GPU (set_fused_kv(false): the separate kernels the model ran
//     before): the pools' bytes must be equal, since the fused kernels repeat those kernels' arithmetic;
//   - the CPU backend's composition (the reference): the fp32 values (the op into an F32 pool) to the rope
//     check's bound, and for BF16 / FP8 pools the pool's format applied to those values bit for bit (BF16
//     rounding, cache_write_fp8's packing on the CPU; comparing the formats of the CPU's own values instead
//     would flip a rounding wherever the GPU's and CPU's cosines or sums, a few ulp apart, straddle a
//     rounding boundary);
//   - rows not named in the slots (-1 padding) keep their bytes.
// At the model's widths (full: Dl 512, Dr 64, Di 128; demo: 256 / 64 / 128; tiny: 64 / 16 / 32), T = 1, 3,
// 37, 300, every pool dtype, padding slots (-1, written nowhere), YaRN's attention factor, with and without
// the indexer's Hadamard + FP8 rounding. The GEMM mode plays no part in the two KV ops (no GEMM inside);
// mla_absorb_q_rope is run in both.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "ops_check_util.h"

namespace opcheck {

namespace {

bool bytes_equal(const Tensor& a_gpu, const Tensor& b_gpu) {
  const Tensor a = g_gpu->to_host(a_gpu), b = g_gpu->to_host(b_gpu);
  return a.nbytes() == b.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

RopeTable yarn_like(int64_t rot_dim, float af) {
  RopeTable t;
  std::uniform_real_distribution<float> ud(0.25f, 1.f);
  for (int64_t i = 0; i < rot_dim / 2; ++i)
    t.inv_freq.push_back(std::pow(10000.f, -2.f * float(i) / float(rot_dim)) * ud(rng()));
  t.attention_factor = af;
  return t;
}

std::vector<int32_t> positions(int64_t T) {
  std::vector<int32_t> p;
  for (int64_t t = 0; t < T; ++t) p.push_back(int32_t(rng()() % 163840));
  return p;
}

// T distinct rows of R, every fifth from the third on -1 (a captured step's padding rows).
std::vector<int32_t> slots_for(int64_t T, int64_t R) {
  std::vector<int32_t> all(static_cast<size_t>(R));
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), rng());
  std::vector<int32_t> s(all.begin(), all.begin() + T);
  for (int64_t t = 2; t < T; t += 5) s[size_t(t)] = -1;
  return s;
}

enum class PoolKind { F32, BF16, FP8 };
const char* kind_name(PoolKind k) { return k == PoolKind::F32 ? "F32" : k == PoolKind::BF16 ? "BF16" : "FP8"; }

// A pool of R rows with random contents, on the GPU twice (for the fused and the composed op) and its first
// contents on the host.
struct Pools {
  Tensor fused, composed, initial;
  Pools(PoolKind k, int64_t R, int64_t width, const KvFp8Layout& L) {
    if (k == PoolKind::FP8) {
      initial = Tensor::empty({R, L.bytes()}, DType::U8);
      for (int64_t i = 0; i < initial.numel(); ++i) initial.data<uint8_t>()[i] = uint8_t(rng()());
    } else {
      Tensor f = randn({R, width});
      initial = k == PoolKind::BF16 ? bf16_pair(f).first : f;
    }
    fused = up(initial);
    composed = up(initial);
  }
};

// Rows not named in slots keep their bytes.
bool others_untouched(const Pools& p, const std::vector<int32_t>& slots) {
  const Tensor h = g_gpu->to_host(p.fused);
  const int64_t R = h.dim(0), rb = int64_t(h.nbytes()) / R;
  std::vector<char> named(static_cast<size_t>(R), 0);
  for (int32_t s : slots)
    if (s >= 0) named[size_t(s)] = 1;
  for (int64_t r = 0; r < R; ++r)
    if (!named[size_t(r)] && std::memcmp(static_cast<const char*>(h.raw()) + r * rb,
                                         static_cast<const char*>(p.initial.raw()) + r * rb, size_t(rb)) != 0)
      return false;
  return true;
}

// The pool the CPU's own format code makes of the fp32 rows `rows` [T, width] (the fused kernel's values,
// read from an F32 pool): BF16 rounded to nearest even, FP8 packed by cache_write_fp8 (quant_dim e4m3
// columns, the rest bf16), from the pool's first contents.
Tensor packed_by_cpu(PoolKind k, const Tensor& initial, const KvFp8Layout& L, const Tensor& rows,
                     const std::vector<int32_t>& slots) {
  Tensor out = Tensor::empty(initial.shape(), initial.dtype());
  std::memcpy(out.raw(), initial.raw(), initial.nbytes());
  const int64_t T = rows.dim(0), W = rows.row_size();
  if (k == PoolKind::BF16) {
    for (int64_t t = 0; t < T; ++t)
      if (slots[size_t(t)] >= 0)
        for (int64_t c = 0; c < W; ++c)
          out.data<uint16_t>()[slots[size_t(t)] * out.row_size() + c] = f32_to_bf16(rows.f32()[t * W + c]);
    return out;
  }
  Tensor quant = Tensor::empty({T, L.quant_dim}, DType::F32), rest = Tensor::empty({T, std::max<int64_t>(L.bf16_dim, 1)}, DType::F32);
  for (int64_t t = 0; t < T; ++t) {
    std::memcpy(quant.f32() + t * L.quant_dim, rows.f32() + t * W, size_t(L.quant_dim) * 4);
    if (L.bf16_dim) std::memcpy(rest.f32() + t * L.bf16_dim, rows.f32() + t * W + L.quant_dim, size_t(L.bf16_dim) * 4);
  }
  g_cpu->cache_write_fp8(out, L, quant, L.bf16_dim ? &rest : nullptr, slots);
  return out;
}

// Rows slots[t] of a host F32 pool (zeros for -1).
Tensor rows_of(const Tensor& pool, const std::vector<int32_t>& slots) {
  const int64_t W = pool.row_size();
  Tensor r = Tensor::empty({int64_t(slots.size()), W}, DType::F32);
  for (size_t t = 0; t < slots.size(); ++t)
    for (int64_t c = 0; c < W; ++c) r.f32()[int64_t(t) * W + c] = slots[t] >= 0 ? pool.f32()[slots[t] * W + c] : 0.f;
  return r;
}

// The three comparisons of one case. `run(be, pool, fp8)` issues the op on a backend into a pool.
// Values rounded to e4m3 after fp32 arithmetic (Hadamard + FP8 keys): the GPU's and the CPU's fp32 sums
// differ in the last bits, which moves an occasional value across a rounding boundary, one e4m3 step (at
// most 1/8 of it, or the subnormal step under the row's scale; seen: 1 value of 38,400 at T = 300). The
// error: values more than one step apart (must be 0) plus the fraction that differs at all (bound: 1e-3, or
// 2 values where there are fewer than 2,000).
double fp8_flip_error(const Tensor& a, const Tensor& b) {
  const int64_t R = b.dim(0), W = b.row_size();
  int64_t beyond = 0, flips = 0;
  for (int64_t r = 0; r < R; ++r) {
    float rowmax = 0.f;
    for (int64_t c = 0; c < W; ++c) rowmax = std::max(rowmax, std::fabs(b.f32()[r * W + c]));
    for (int64_t c = 0; c < W; ++c) {
      const float x = a.f32()[r * W + c], y = b.f32()[r * W + c];
      if (x == y) continue;
      ++flips;
      const float step = std::max(std::fabs(x), std::fabs(y)) / 8.f + std::ldexp(rowmax, -17);
      if (!(std::fabs(x - y) <= step)) ++beyond;
    }
  }
  return double(beyond) + double(flips) / double(std::max<int64_t>(1, R * W));
}

template <typename Run>
void compare_case(const std::string& op, const std::string& what, PoolKind k, int64_t R, int64_t width,
                  const KvFp8Layout& L, const std::vector<int32_t>& slots, Run run, bool fp8_rounded = false) {
  const KvFp8Layout* lp = k == PoolKind::FP8 ? &L : nullptr;
  Pools p(k, R, width, L);
  g_gpu->set_fused_kv(true);
  run(*g_gpu, p.fused, lp);
  const std::string path = g_gpu->last_kv_write_path();
  g_gpu->set_fused_kv(false);
  run(*g_gpu, p.composed, lp);
  g_gpu->set_fused_kv(true);
  const std::string w = fmt::format("{} {} pool ({})", what, kind_name(k), path);
  record(op + " fused = separate", w + " (bitwise)", path == "fused" && bytes_equal(p.fused, p.composed) ? 0.0 : 1.0,
         0.0);
  record(op + " slots", w + ": other rows untouched", others_untouched(p, slots) ? 0.0 : 1.0, 0.0);
  // The kernel's fp32 values: the same op into an F32 pool, against the CPU's composition.
  Tensor init = randn({R, width});
  Tensor fg = up(init), fc = Tensor::empty({R, width}, DType::F32);
  std::memcpy(fc.raw(), init.raw(), init.nbytes());
  run(*g_gpu, fg, nullptr);
  run(*g_cpu, fc, nullptr);
  const Tensor fh = down(fg);
  if (k == PoolKind::F32) {
    std::vector<int32_t> wr;
    for (int32_t s : slots)
      if (s >= 0) wr.push_back(s);
    const Tensor got = g_gpu->cache_gather(fg, wr), want = g_cpu->cache_gather(fc, wr);
    if (fp8_rounded)
      record(op + " vs cpu", what + " F32 values (values 1 e4m3 step apart + fraction differing)",
             fp8_flip_error(down(got), want), std::max(1e-3, 2.0 / double(want.numel())));
    else
      record(op + " vs cpu", what + " F32 values", cmp(got, want).maxrel, 1e-5);
  } else {  // the pool's format applied to those values: bit for bit the CPU's rounding / packing
    record(op + " vs cpu", w + ": format of the F32 values (bitwise)",
           bytes_equal(p.fused, up(packed_by_cpu(k, p.initial, L, rows_of(fh, slots), slots))) ? 0.0 : 1.0, 0.0);
  }
}

struct Widths {
  const char* name;
  int64_t Dl, Dr, Di;
};
const Widths kWidths[] = {{"full", 512, 64, 128}, {"demo", 256, 64, 128}, {"tiny", 64, 16, 32}};

void check_latent() {
  for (const Widths& w : kWidths)
    for (int64_t T : {1, 3, 37, 300})
      for (PoolKind k : {PoolKind::F32, PoolKind::BF16, PoolKind::FP8}) {
        const float af = T == 37 ? 0.7f : 1.0f;  // YaRN's attention factor on the cos / sin
        const int64_t R = 700, D = w.Dl + w.Dr;
        const KvFp8Layout L = KvFp8Layout::latent(w.Dl, w.Dr);
        Tensor kv = randn({T, D}, 1.5f), nw = randn({w.Dl}, 0.3f, 1.f);
        const RopeTable rope = yarn_like(w.Dr, af);
        const auto pos = positions(T);
        const auto slots = slots_for(T, R);
        Tensor kvg = up(kv), nwg = up(nw);
        compare_case("mla_kv_write", fmt::format("{} T={} af={}", w.name, T, af), k, R, D, L, slots,
                     [&](Backend& be, Tensor& pool, const KvFp8Layout* lp) {
                       const bool gpu = &be == g_gpu.get();
                       be.mla_kv_write(gpu ? kvg : kv, w.Dl, gpu ? nwg : nw, 1e-6f, pos, rope, pool, lp, slots);
                     });
      }
}

void check_indexer_key() {
  for (const Widths& w : kWidths) {
    if (w.name == std::string("demo")) continue;  // the same Di and Dr as full
    for (int64_t T : {1, 3, 37, 300})
      for (PoolKind k : {PoolKind::F32, PoolKind::BF16, PoolKind::FP8})
        for (bool hadamard : {false, true}) {
          const int64_t R = 700, Di = w.Di;
          const float af = T == 37 ? 0.7f : 1.0f;
          const KvFp8Layout L = KvFp8Layout::indexer(Di);
          Tensor x = randn({T, Di}, 2.f, 0.5f), lw = randn({Di}, 0.3f, 1.f), lb = randn({Di}, 0.1f);
          const RopeTable rope = yarn_like(w.Dr, af);
          const auto pos = positions(T);
          const auto slots = slots_for(T, R);
          Tensor xg = up(x), lwg = up(lw), lbg = up(lb);
          compare_case("indexer_key_write",
                       fmt::format("{} T={} af={}{}", w.name, T, af, hadamard ? " hadamard+fp8" : ""), k, R, Di, L,
                       slots, [&](Backend& be, Tensor& pool, const KvFp8Layout* lp) {
                         const bool gpu = &be == g_gpu.get();
                         be.indexer_key_write(gpu ? xg : x, gpu ? lwg : lw, gpu ? lbg : lb, 1e-6f, w.Dr, pos, rope,
                                              hadamard, pool, lp, slots);
                       },
                       hadamard);
        }
  }
}

void check_absorb_q_rope() {
  struct Case {
    const char* name;
    int64_t H, Dn, Dr, Dv, Dl;
  };
  // The bf16 form has no separate twin (gpu_ops_check_bf16_absorb.cpp checks it).
  const uint32_t parts = g_gpu->options().fast_parts;
  g_gpu->set_fast_parts(parts & ~cuda::kFastBf16Absorb);
  for (const Case& c : {Case{"full widths, 128 heads", 128, 128, 64, 128, 512},
                        Case{"full widths, 16 heads", 16, 128, 64, 128, 512}, Case{"demo widths", 4, 64, 64, 64, 256},
                        Case{"tiny widths", 4, 32, 16, 32, 64}}) {
    BothLinear kv_b(c.H * (c.Dn + c.Dv), c.Dl, DType::F8_E4M3);
    for (int64_t T : {1, 3, 37, 300}) {
      const RopeTable rope = yarn_like(c.Dr, T == 37 ? 0.7f : 1.0f);
      const auto pos = positions(T);
      Tensor q = randn({T, c.H * (c.Dn + c.Dr)});
      for (GemmMode mode : {GemmMode::Exact, GemmMode::Fast}) {
        g_gpu->set_gemm_mode(mode);
        g_gpu->set_fused_kv(true);
        Tensor fused = g_gpu->mla_absorb_q_rope(up(q), kv_b.g, c.H, c.Dn, c.Dv, pos, rope);
        const std::string path = g_gpu->last_kv_write_path();
        g_gpu->set_fused_kv(false);
        Tensor composed = g_gpu->mla_absorb_q_rope(up(q), kv_b.g, c.H, c.Dn, c.Dv, pos, rope);
        g_gpu->set_fused_kv(true);
        const std::string what =
            fmt::format("{} T={} {} ({})", c.name, T, mode == GemmMode::Exact ? "exact" : "fast", path);
        record("mla_absorb_q_rope fused = separate", what + " (bitwise)",
               path == "fused" && bytes_equal(fused, composed) ? 0.0 : 1.0, 0.0);
        if (mode == GemmMode::Exact) {
          Tensor qc = Tensor::empty(q.shape(), DType::F32);
          std::memcpy(qc.raw(), q.raw(), q.nbytes());
          record("mla_absorb_q_rope vs cpu", what,
                 cmp(fused, g_cpu->mla_absorb_q_rope(qc, kv_b.c, c.H, c.Dn, c.Dv, pos, rope)).rel, kTolF32);
        }
      }
    }
  }
  g_gpu->set_fast_parts(parts);
  g_gpu->set_gemm_mode(GemmMode::Exact);
}

}  // namespace

void check_fused_kv() {
  const bool was = g_gpu->options().fused_kv;
  check_latent();
  check_indexer_key();
  check_absorb_q_rope();
  g_gpu->set_fused_kv(was);
}

}  // namespace opcheck
