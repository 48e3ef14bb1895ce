// The packed FP8 KV layout (backend/kv_fp8.h) on the CPU backend: bytes where DeepSeek puts them, codes
// equal to a brute-force nearest-e4m3 search, round-trip error within e4m3's half step, and attention /
// indexer over an FP8 pool equal to the same ops over its dequantised fp32 values.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "backend/backend.h"
#include "util/error.h"

using namespace ds;
using namespace ds::backend;

namespace {
std::mt19937 rng(77);

Tensor randn(std::vector<int64_t> shape, float scale = 1.0f) {
  Tensor t = Tensor::empty(std::move(shape), DType::F32);
  std::normal_distribution<float> d(0.0f, scale);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = d(rng);
  return t;
}

// The e4m3 code nearest to v among all finite codes (ties: the even code), by search.
uint8_t nearest_code(float v) {
  int best = 0;
  double err = INFINITY;
  for (int c = 0; c < 256; ++c) {
    const float f = fp8e4m3_to_f32(uint8_t(c));
    if (std::isnan(f) || (f == 0 && std::signbit(f) != std::signbit(v))) continue;
    const double e = std::fabs(double(f) - double(v));
    if (e < err || (e == err && (c & 1) == 0 && (best & 1) == 1)) err = e, best = c;
  }
  return uint8_t(best);
}

// The scale rule of both layouts, computed apart: 2^ceil(log2(max(amax, 1e-4) / 448)).
float pow2_scale(float amax) { return float(std::exp2(std::ceil(std::log2(double(std::max(amax, 1e-4f) / 448.0f))))); }

float read_f32(const uint8_t* p) {
  float f;
  std::memcpy(&f, p, 4);
  return f;
}

// The fp32 pool holding the dequantised rows of a packed pool.
Tensor dequantised_pool(Backend& be, const Tensor& pool, const KvFp8Layout& L) {
  std::vector<int32_t> all(size_t(pool.dim(0)));
  for (size_t i = 0; i < all.size(); ++i) all[i] = int32_t(i);
  return be.cache_gather_fp8(pool, L, all);
}

class KvFp8 : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> be = make_cpu_backend(2);
};

TEST_F(KvFp8, LatentLayoutIsFlashMlas656Bytes) {
  const KvFp8Layout L = KvFp8Layout::latent(512, 64);
  EXPECT_EQ(L.tiles(), 4);
  EXPECT_EQ(L.scale_offset(), 512);
  EXPECT_EQ(L.bf16_offset(), 528);
  EXPECT_EQ(L.bytes(), 656);
  EXPECT_EQ(KvFp8Layout::indexer(128).bytes(), 132);
  EXPECT_TRUE(be->supports_kv_dtype(DType::F8_E4M3));
}

TEST_F(KvFp8, LatentWriteMatchesBruteForceQuantiser) {
  const int64_t T = 6, Dl = 512, Dr = 64, rows = 10;
  const KvFp8Layout L = KvFp8Layout::latent(Dl, Dr);
  Tensor c = randn({T, Dl}), rope = randn({T, Dr}, 3.0f);
  // Tiles of very different magnitudes, one all-zero tile, one tiny (subnormal codes) and one huge.
  for (int64_t i = 0; i < 128; ++i) {
    c.f32()[1 * Dl + 128 + i] = 0.0f;
    c.f32()[2 * Dl + 256 + i] *= 1e-6f;
    c.f32()[3 * Dl + i] *= 1e5f;
  }
  Tensor pool = be->alloc({rows, L.bytes()}, DType::U8);
  const std::vector<int32_t> slots = {7, 0, 3, -1, 9, 2};
  be->cache_write_fp8(pool, L, c, &rope, slots);
  for (int64_t t = 0; t < T; ++t) {
    if (slots[t] < 0) continue;
    const uint8_t* row = pool.data<uint8_t>() + slots[t] * L.bytes();
    for (int64_t tile = 0; tile < 4; ++tile) {
      float amax = 0;
      for (int64_t i = 0; i < 128; ++i) amax = std::max(amax, std::fabs(c.f32()[t * Dl + tile * 128 + i]));
      const float s = pow2_scale(amax);
      ASSERT_EQ(read_f32(row + 512 + 4 * tile), s) << "token " << t << " tile " << tile;
      for (int64_t i = 0; i < 128; ++i) {
        const int64_t ch = tile * 128 + i;
        const uint8_t want = s > 0 ? nearest_code(c.f32()[t * Dl + ch] / s) : 0;
        ASSERT_EQ(row[ch], want) << "token " << t << " channel " << ch;
      }
    }
    for (int64_t i = 0; i < Dr; ++i) {
      uint16_t h;
      std::memcpy(&h, row + 528 + 2 * i, 2);
      ASSERT_EQ(h, f32_to_bf16(rope.f32()[t * Dr + i]));
    }
  }
  // Reading: bf16(code x scale) for the e4m3 channels, the bf16 channels as stored.
  Tensor back = be->cache_gather_fp8(pool, L, {7});
  const uint8_t* row7 = pool.data<uint8_t>() + 7 * L.bytes();
  for (int64_t ch = 0; ch < Dl; ++ch) {
    const float s = read_f32(row7 + 512 + 4 * (ch / 128));
    ASSERT_EQ(back.f32()[ch], fp8e4m3_to_f32(row7[ch]) * s) << ch;  // exact: s is a power of two
  }
  // The padding token's would-be row (slot 1 is not in the list) stays zero.
  for (int64_t b = 0; b < L.bytes(); ++b) ASSERT_EQ(pool.data<uint8_t>()[1 * L.bytes() + b], 0);
}

TEST_F(KvFp8, RoundTripErrorWithinHalfAStep) {
  // Also a latent width that is not a multiple of 128 (the tiny models' 64 / 200 channels: one shorter tile).
  for (auto [Dl, Dr] : {std::pair<int64_t, int64_t>{512, 64}, {64, 16}, {200, 8}}) {
    const KvFp8Layout L = KvFp8Layout::latent(Dl, Dr);
    const int64_t T = 40;
    Tensor c = randn({T, Dl}, 2.0f), rope = randn({T, Dr});
    Tensor pool = be->alloc({T, L.bytes()}, DType::U8);
    std::vector<int32_t> slots(T);
    for (int64_t t = 0; t < T; ++t) slots[t] = int32_t(T - 1 - t);
    be->cache_write_fp8(pool, L, c, &rope, slots);
    Tensor back = be->cache_gather_fp8(pool, L, slots);
    ASSERT_EQ(back.dim(1), Dl + Dr);
    double worst = 0;  // error / its bound (half a step of e4m3 at the value or the subnormal step)
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t tile = 0; tile < L.tiles(); ++tile) {
        const int64_t c0 = tile * 128, c1 = std::min(Dl, c0 + 128);
        float amax = 0;
        for (int64_t i = c0; i < c1; ++i) amax = std::max(amax, std::fabs(c.f32()[t * Dl + i]));
        const double s = pow2_scale(amax);
        for (int64_t i = c0; i < c1; ++i) {
          const double x = c.f32()[t * Dl + i], y = back.f32()[t * (Dl + Dr) + i];
          const double step = std::max(std::exp2(std::floor(std::log2(std::fabs(x) / s)) - 3), std::exp2(-9.0)) * s;
          // (no bf16 rounding on top: code x a power of two is exact in bf16)
          worst = std::max(worst, std::fabs(x - y) / (0.5 * step));
        }
      }
      for (int64_t i = 0; i < Dr; ++i)
        ASSERT_EQ(back.f32()[t * (Dl + Dr) + Dl + i], bf16_to_f32(f32_to_bf16(rope.f32()[t * Dr + i])));
    }
    EXPECT_LE(worst, 1.0 + 1e-5) << Dl;
    std::printf("[kv_fp8] latent %lld+%lld: worst error %.3f half-steps\n", (long long)Dl, (long long)Dr, worst);
  }
}

TEST_F(KvFp8, IndexerKeysUsePowerOfTwoScalesAndKeepRoundedKeysExactly) {
  const int64_t T = 16, D = 128;
  const KvFp8Layout L = KvFp8Layout::indexer(D);
  Tensor k = randn({T, D}, 4.0f);
  be->hadamard_fp8_round(k, D);  // what the model caches in its FP8 indexer mode
  Tensor pool = be->alloc({T, L.bytes()}, DType::U8);
  std::vector<int32_t> slots(T);
  for (int64_t t = 0; t < T; ++t) slots[t] = int32_t(t);
  be->cache_write_fp8(pool, L, k, nullptr, slots);
  Tensor back = be->cache_gather_fp8(pool, L, slots);
  for (int64_t t = 0; t < T; ++t) {
    const float s = read_f32(pool.data<uint8_t>() + t * L.bytes() + D);
    int e;
    EXPECT_EQ(std::frexp(s, &e), 0.5f) << "scale " << s << " is not a power of two";
    for (int64_t i = 0; i < D; ++i) ASSERT_EQ(back.f32()[t * D + i], k.f32()[t * D + i]) << t << "," << i;
  }
}

TEST_F(KvFp8, AbsorbedAttentionOverFp8PoolEqualsAttentionOverItsDequantisedValues) {
  AttnBatch ab;
  ab.page_size = 3;
  ab.page_tables = {{4, 0, 7, 2}, {5, 1, 3, 6}};
  ab.seq_of_token = {0, 0, 1};
  ab.pos_of_token = {9, 10, 7};
  Tensor index = Tensor::empty({3, 5}, DType::I32);
  const int32_t idx[15] = {0, 3, 4, 8, 9, 1, 2, 10, -1, -1, 7, 0, 5, 6, -1};
  std::copy(idx, idx + 15, index.i32());
  const int64_t H = 4, Dl = 256, Dr = 32, D = Dl + Dr, rows = 24;
  const KvFp8Layout L = KvFp8Layout::latent(Dl, Dr);
  Tensor lat = randn({rows, Dl}), rope = randn({rows, Dr}), q = randn({3, H, D}, 0.2f);
  Tensor pool = be->alloc({rows, L.bytes()}, DType::U8);
  std::vector<int32_t> slots(rows);
  for (int64_t r = 0; r < rows; ++r) slots[r] = int32_t(r);
  be->cache_write_fp8(pool, L, lat, &rope, slots);
  Tensor deq = dequantised_pool(*be, pool, L);
  Tensor a = be->mla_attention_absorbed(q, pool, index, ab, Dl, 0.3f);
  Tensor b = be->mla_attention_absorbed(q, deq, index, ab, Dl, 0.3f);
  double err = 0, m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    err = std::max(err, double(std::fabs(a.f32()[i] - b.f32()[i])));
    m = std::max(m, double(std::fabs(b.f32()[i])));
  }
  EXPECT_LE(err, 1e-6 * m);
  // The quantisation itself is visible against the unquantised pool (the test would catch a pool
  // silently read as fp32 or not at all).
  Tensor exact = Tensor::empty({rows, D}, DType::F32);
  be->copy_cols(exact, 0, lat, 0, Dl);
  be->copy_cols(exact, Dl, rope, 0, Dr);
  Tensor c = be->mla_attention_absorbed(q, exact, index, ab, Dl, 0.3f);
  double diff = 0;
  for (int64_t i = 0; i < a.numel(); ++i) diff = std::max(diff, double(std::fabs(a.f32()[i] - c.f32()[i])));
  EXPECT_GT(diff, 0.0);
  EXPECT_LT(diff, 0.1 * m);
  // A packed pool of the wrong width is refused.
  Tensor narrow = be->alloc({rows, L.bytes() - 4}, DType::U8);
  EXPECT_THROW(be->mla_attention_absorbed(q, narrow, index, ab, Dl, 0.3f), ds::Error);
}

TEST_F(KvFp8, IndexerOverFp8PoolEqualsIndexerOverItsDequantisedKeys) {
  AttnBatch ab;
  ab.page_size = 4;
  ab.page_tables = {{3, 1, 0, 2, 5, 4, 7, 6}, {8, 9}};
  const int64_t H = 4, D = 32, topk = 6;
  for (int32_t p : {2, 5, 6, 20, 29}) ab.seq_of_token.push_back(0), ab.pos_of_token.push_back(p);
  ab.seq_of_token.push_back(1), ab.pos_of_token.push_back(7);
  const int64_t T = 6, rows = 40;
  const KvFp8Layout L = KvFp8Layout::indexer(D);
  Tensor q = randn({T, H * D}), w = randn({T, H}), k = randn({rows, D});
  Tensor pool = be->alloc({rows, L.bytes()}, DType::U8);
  std::vector<int32_t> slots(rows);
  for (int64_t r = 0; r < rows; ++r) slots[r] = int32_t(r);
  be->cache_write_fp8(pool, L, k, nullptr, slots);
  Tensor a = be->indexer_topk(q, w, pool, ab, H, D, topk);
  Tensor b = be->indexer_topk(q, w, dequantised_pool(*be, pool, L), ab, H, D, topk);
  ASSERT_EQ(a.numel(), b.numel());
  EXPECT_TRUE(std::equal(a.i32(), a.i32() + a.numel(), b.i32()));
}

}  // namespace
