// gpu_bench's FP8 KV cache table (`gpu_bench kvfp8`): the decode kernels that read the cache, over the
// same random rows stored both ways, device time alone (profile events around each kernel, median of 7):
//   MLA (absorbed, tensor cores, 128 heads, top-2048): BF16 latent rows (1,152 B) vs packed FP8 (656 B);
//   indexer scores (64 heads x 128, IndexerMode::Fp8 values, tensor cores): fp32 keys (512 B) vs packed
//     FP8 keys (132 B); the two score rows must be identical (keys rounded by hadamard_fp8_round are
//     stored exactly), which the table checks.
// GB/s: the distinct bytes each kernel must read (gathered latent rows; every key of the context once).
#include "gpu_bench_kvfp8.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/kv_fp8.h"
#include "check_util.h"

namespace ds::gpubench {
namespace {
using backend::AttnBatch;
using backend::KvFp8Layout;
using backend::cuda::CudaBackend;

// Fills rows [0, rows) of a BF16 (width 576) and a packed FP8 latent pool with the same random rows.
void fill_latent(CudaBackend& be, Tensor& bf16, Tensor& fp8, const KvFp8Layout& L, int64_t rows) {
  const int64_t n = 8192;
  Tensor block = be.from_host(gpucheck::randn({n, L.width()}));
  Tensor quant = be.empty({n, L.quant_dim}, DType::F32), rest = be.empty({n, L.bf16_dim}, DType::F32);
  be.copy_cols(quant, 0, block, 0, L.quant_dim);
  be.copy_cols(rest, 0, block, L.quant_dim, L.bf16_dim);
  std::vector<int32_t> slots(static_cast<size_t>(n));
  for (int64_t r0 = 0; r0 < rows; r0 += n) {
    std::iota(slots.begin(), slots.end(), int32_t(r0));
    be.cache_write(bf16, 0, block, slots);
    be.cache_write_fp8(fp8, L, quant, &rest, slots);
  }
  DS_CUDA_CHECK(cudaStreamSynchronize(be.stream()));
}

float median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void bench_mla(CudaBackend& be, double hbm_gbs) {
  const int H = 128, Dl = 512, D = 576, K = 2048, page = 64;
  const int64_t R = int64_t(1) << 21;  // 2M rows: 2.4 GB BF16, 1.4 GB FP8, shared by every page table
  const KvFp8Layout L = KvFp8Layout::latent(Dl, D - Dl);
  Tensor pb = be.empty({R, D}, DType::BF16), pf = be.empty({R, L.bytes()}, DType::U8);
  fill_latent(be, pb, pf, L, R);
  std::mt19937_64 rng(7);
  std::printf("\n| MLA decode | queries | context | BF16 pool | FP8 pool | FP8 / BF16 | BF16 rows GB/s (%% HBM) | "
              "FP8 rows GB/s (%% HBM) | FP8 vs BF16 output |\n|---|---|---|---|---|---|---|---|---|\n");
  for (int B : {32, 64, 128})
    for (int ctx : {32768, 131072}) {
      AttnBatch ab;
      ab.page_size = page;
      const int pages = ctx / page;
      Tensor idx = Tensor::empty({B, K}, DType::I32);
      for (int b = 0; b < B; ++b) {
        std::vector<int32_t> pt(static_cast<size_t>(pages));
        for (auto& p : pt) p = int32_t(rng() % uint64_t(R / page));
        ab.page_tables.push_back(pt);
        ab.seq_of_token.push_back(b);
        ab.pos_of_token.push_back(ctx - 1);
        std::vector<int32_t> sel(static_cast<size_t>(ctx));
        std::iota(sel.begin(), sel.end(), 0);
        std::shuffle(sel.begin(), sel.end(), rng);
        sel.resize(size_t(K));
        std::sort(sel.begin(), sel.end());
        std::copy(sel.begin(), sel.end(), idx.i32() + int64_t(b) * K);
      }
      Tensor di = be.from_host(idx), q = be.from_host(gpucheck::randn({B, H, D}, 0.05f));
      float us[2];
      Tensor out[2];
      be.set_profile(true);
      for (int k = 0; k < 2; ++k) {
        std::vector<float> v;
        for (int r = 0; r < 8; ++r) {
          out[k] = be.mla_attention_absorbed(q, k ? pf : pb, di, ab, Dl, 0.07f);
          const auto [att, merge] = be.last_mla_profile_us();
          if (r) v.push_back(att + merge);
        }
        us[k] = median(v);
      }
      be.set_profile(false);
      const gpucheck::Err e = gpucheck::compare(be.to_host_f32(out[1]), be.to_host_f32(out[0]));
      const double rows = double(B) * K;
      auto gbs = [&](int k, double row_bytes) { return rows * row_bytes / (us[k] * 1e-6) / 1e9; };
      std::printf("| %s | %d | %d | %.1f us | %.1f us | %.2f | %.0f (%.0f%%) | %.0f (%.0f%%) | %.1e |\n",
                  be.last_mla_path(), B, ctx, us[0], us[1], us[1] / us[0], gbs(0, D * 2),
                  100 * gbs(0, D * 2) / hbm_gbs, gbs(1, double(L.bytes())), 100 * gbs(1, double(L.bytes())) / hbm_gbs,
                  e.rel);
      std::fflush(stdout);
    }
}

bool bench_indexer(CudaBackend& be, double hbm_gbs) {
  const int Hi = 64, Di = 128, topk = 2048, page = 64;
  const KvFp8Layout L = KvFp8Layout::indexer(Di);
  bool ok = true;
  std::printf("\n| indexer decode | queries | context | fp32 keys: scores | FP8 keys: scores | FP8 / fp32 | fp32 keys GB/s "
              "(%% HBM) | FP8 keys GB/s (%% HBM) | top-k | scores identical |\n|---|---|---|---|---|---|---|---|---|---|\n");
  std::mt19937_64 rng(11);
  for (int B : {32, 128})
    for (int ctx : {32768, 131072}) {
      AttnBatch ab;
      ab.page_size = page;
      const int pages = ctx / page;
      for (int b = 0; b < B; ++b) {
        std::vector<int32_t> pt(static_cast<size_t>(pages));
        std::iota(pt.begin(), pt.end(), b * pages);
        std::shuffle(pt.begin(), pt.end(), rng);
        ab.page_tables.push_back(pt);
        ab.seq_of_token.push_back(b);
        ab.pos_of_token.push_back(ctx - 1);
      }
      const int64_t rows = int64_t(B) * ctx;
      Tensor kp = be.empty({rows, Di}, DType::F32), kf = be.empty({rows, L.bytes()}, DType::U8);
      {  // random keys, e4m3-rounded as IndexerMode::Fp8, stored both ways (8192 rows tiled)
        const int64_t n = 8192;
        Tensor blk = be.from_host(gpucheck::randn({n, Di}));
        be.hadamard_fp8_round(blk, Di);
        std::vector<int32_t> slots(static_cast<size_t>(n));
        for (int64_t r0 = 0; r0 < rows; r0 += n) {
          std::iota(slots.begin(), slots.end(), int32_t(r0));
          be.cache_write(kp, 0, blk, slots);
          be.cache_write_fp8(kf, L, blk, nullptr, slots);
        }
      }
      Tensor q = be.from_host(gpucheck::randn({B, Hi * Di})), w = be.from_host(gpucheck::randn({B, Hi}, 0.1f));
      be.hadamard_fp8_round(q, Di);
      float us[2], topk_us = 0;
      be.set_profile(true);
      for (int k = 0; k < 2; ++k) {
        std::vector<float> v;
        for (int r = 0; r < 8; ++r) {
          be.indexer_topk(q, w, k ? kf : kp, ab, Hi, Di, topk);
          if (r) v.push_back(be.last_indexer_profile_us().first);
          topk_us = be.last_indexer_profile_us().second;
        }
        us[k] = median(v);
      }
      be.set_profile(false);
      const Tensor s0 = be.to_host_f32(be.indexer_scores(q, w, kp, ab, Hi, Di, topk));
      const Tensor s1 = be.to_host_f32(be.indexer_scores(q, w, kf, ab, Hi, Di, topk));
      const bool same = s0.nbytes() == s1.nbytes() && std::equal(s0.f32(), s0.f32() + s0.numel(), s1.f32());
      ok &= same;
      auto gbs = [&](int k, double row_bytes) { return double(rows) * row_bytes / (us[k] * 1e-6) / 1e9; };
      std::printf("| %s | %d | %d | %.1f us | %.1f us | %.2f | %.0f (%.0f%%) | %.0f (%.0f%%) | %.1f us | %s |\n",
                  be.last_indexer_path(), B, ctx, us[0], us[1], us[1] / us[0], gbs(0, Di * 4),
                  100 * gbs(0, Di * 4) / hbm_gbs, gbs(1, double(L.bytes())), 100 * gbs(1, double(L.bytes())) / hbm_gbs,
                  topk_us, same ? "yes" : "NO");
      std::fflush(stdout);
    }
  return ok;
}
}  // namespace

bool bench_kv_fp8(CudaBackend& be, double hbm_gbs) {
  bench_mla(be, hbm_gbs);
  return bench_indexer(be, hbm_gbs);
}

}  // namespace ds::gpubench
