// The packed rows of an FP8 KV pool (--kv-cache-dtype fp8_e4m3), DeepSeek's layouts:
//   latent (FlashMLA's "V32_FP8Sparse"): the kv_lora_rank channels as e4m3 in tiles of 128, one fp32
//     scale per tile, then the rope channels in bf16: 512 + 4 x 4 + 64 x 2 = 656 bytes per token and layer.
//     The scale is a power of two (ue8m0 of amax / 448, amax clamped to >= 1e-4): what DeepSeek's V3.2
//     reference simulates for its deployed cache (act_quant with the config's scale_fmt "ue8m0") and what
//     FlashMLA's quantiser has used since 2026-01 (earlier: plain amax / 448). Then code x scale is exact
//     in bf16, so the kernels can dequantise by exponent arithmetic;
//   indexer key: index_head_dim e4m3 + one fp32 scale per token, a power of two (ue8m0, amax clamped to
//     >= 1e-4, as DeepSeek's indexer): 128 + 4 = 132 bytes. A key already rounded by hadamard_fp8_round
//     (the same scale rule) is stored exactly.
// A pool of either kind is a U8 tensor [rows, bytes()]. Quantisation happens in the cache write
// (Backend::cache_write_fp8), dequantisation (to bf16(code x scale), FlashMLA's) inside the attention and
// indexer ops that read the pool.
// These host functions are the reference numerics; the CUDA kernels repeat them operation for operation.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "tensor/dtype.h"

namespace ds::backend {

struct KvFp8Layout {
  int64_t quant_dim = 0;   // channels stored as e4m3
  int64_t tile = 128;      // channels per fp32 scale (the last tile may be shorter)
  int64_t bf16_dim = 0;    // channels stored as bf16 after the scales
  bool pow2_scales = false;

  static KvFp8Layout latent(int64_t latent_dim, int64_t rope_dim) { return {latent_dim, 128, rope_dim, true}; }
  static KvFp8Layout indexer(int64_t head_dim) { return {head_dim, head_dim, 0, true}; }

  int64_t tiles() const { return (quant_dim + tile - 1) / tile; }
  int64_t scale_offset() const { return quant_dim; }
  int64_t bf16_offset() const { return quant_dim + 4 * tiles(); }
  int64_t bytes() const { return bf16_offset() + 2 * bf16_dim; }
  int64_t width() const { return quant_dim + bf16_dim; }  // the dequantised row
};

// The scale of a tile whose largest magnitude is amax.
inline float kv_fp8_scale(float amax, bool pow2) {
  if (!pow2) return amax / 448.0f;  // 0 for an all-zero tile: its codes are 0 and dequantise to 0
  int e;
  const float m = std::frexp(std::max(amax, 1e-4f) / 448.0f, &e);
  return std::ldexp(1.0f, m == 0.5f ? e - 1 : e);  // the power of two at or above amax / 448
}

// Packs one row: quant [quant_dim] -> e4m3 codes + scales, rest [bf16_dim] -> bf16 (rest may be null
// when bf16_dim is 0).
inline void kv_fp8_pack_row(const KvFp8Layout& L, const float* quant, const float* rest, uint8_t* row) {
  for (int64_t t = 0; t < L.tiles(); ++t) {
    const int64_t c0 = t * L.tile, c1 = std::min(L.quant_dim, c0 + L.tile);
    float amax = 0;
    for (int64_t c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(quant[c]));
    const float s = kv_fp8_scale(amax, L.pow2_scales);
    for (int64_t c = c0; c < c1; ++c) row[c] = s > 0 ? f32_to_fp8e4m3(quant[c] / s) : uint8_t(0);
    std::memcpy(row + L.scale_offset() + 4 * t, &s, 4);
  }
  for (int64_t c = 0; c < L.bf16_dim; ++c) {
    const uint16_t h = f32_to_bf16(rest[c]);
    std::memcpy(row + L.bf16_offset() + 2 * c, &h, 2);
  }
}

// The scale of tile t of a packed row.
inline float kv_fp8_row_scale(const KvFp8Layout& L, const uint8_t* row, int64_t t) {
  float s;
  std::memcpy(&s, row + L.scale_offset() + 4 * t, 4);
  return s;
}

// The 256 e4m3 codes as floats (decoding in the attention loops by table, not by ldexp).
inline const float* kv_fp8_code_table() {
  static const auto table = [] {
    struct T { float v[256]; } t;
    for (int i = 0; i < 256; ++i) t.v[i] = fp8e4m3_to_f32(uint8_t(i));
    return t;
  }();
  return table.v;
}

// The value of an e4m3 code under its tile's scale: bf16(code x scale), the product in fp32 rounded to
// bf16 as FlashMLA's kernels dequantise (the BF16 MMA then reads it exactly). Exact (no rounding) for the
// power-of-two scales of both layouts.
inline float kv_fp8_value(float code, float scale) { return bf16_to_f32(f32_to_bf16(code * scale)); }

// Unpacks one row into out [width()]: the e4m3 channels' values, then the bf16 channels.
inline void kv_fp8_unpack_row(const KvFp8Layout& L, const uint8_t* row, float* out) {
  const float* code = kv_fp8_code_table();
  for (int64_t t = 0; t < L.tiles(); ++t) {
    const float s = kv_fp8_row_scale(L, row, t);
    for (int64_t c = t * L.tile; c < std::min(L.quant_dim, (t + 1) * L.tile); ++c) out[c] = kv_fp8_value(code[row[c]], s);
  }
  for (int64_t c = 0; c < L.bf16_dim; ++c) {
    uint16_t h;
    std::memcpy(&h, row + L.bf16_offset() + 2 * c, 2);
    out[L.quant_dim + c] = bf16_to_f32(h);
  }
}

}  // namespace ds::backend
