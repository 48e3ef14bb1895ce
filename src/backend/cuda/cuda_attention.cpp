// CudaBackend: MLA attention (absorbed sparse, expanded, dense causal MHA prefill), the lightning indexer,
// FP8 indexer numerics, MoE routing.
#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/launch_timer.h"
#include "util/log.h"

namespace ds::backend::cuda {

namespace {
constexpr int64_t kMaxGridY = 65535;

// The indexer's key pool: fp32 rows, or packed FP8 keys (a U8 pool).
void set_index_keys(IndexerArgs& a, const Tensor& k_pool, const KvFp8Layout& layout) {
  if (k_pool.dtype() == DType::U8) {
    DS_CHECK(k_pool.device() == Device::CUDA, "indexer: key pool {} is not on the GPU", k_pool.describe());
    a.k_fp8 = k_pool.data<uint8_t>();
    a.kv = kv_fp8_dev(layout);
  } else {
    a.k_pool = k_pool.data<float>();
  }
}
}  // namespace

Tensor CudaBackend::mla_attention_absorbed(const Tensor& q_abs, const Tensor& kv_pool, const Tensor& index,
                                           const AttnBatch& batch, int64_t latent_dim, float scale) {
  const int64_t T = q_abs.dim(0), H = q_abs.dim(1), D = q_abs.dim(2), K = index.dim(1);
  // A U8 pool is packed FP8 (backend/kv_fp8.h): the kernels dequantise the rows they gather.
  const bool fp8 = kv_pool.dtype() == DType::U8;
  const KvFp8Layout layout = KvFp8Layout::latent(latent_dim, D - latent_dim);
  DS_CHECK(fp8 ? kv_pool.row_size() == layout.bytes() : kv_pool.row_size() == D,
           "absorbed attention: query width {} does not match the cache {}", D, kv_pool.describe());
  DS_CHECK((q_abs.dtype() == DType::F32 || q_abs.dtype() == DType::BF16) &&
               (kv_pool.dtype() == DType::F32 || kv_pool.dtype() == DType::BF16 || fp8) &&
               index.dtype() == DType::I32 && index.dim(0) == T && int64_t(batch.pos_of_token.size()) == T,
           "absorbed attention: q {}, pool {}, index {}", q_abs.describe(), kv_pool.describe(), index.describe());
  DS_CHECK(D % 4 == 0 && latent_dim % 4 == 0 && latent_dim <= kMlaMaxDl && D <= kMlaMaxD && latent_dim <= D,
           "absorbed attention: widths {} / {} unsupported (multiples of 4, latent <= {}, row <= {})", latent_dim, D,
           kMlaMaxDl, kMlaMaxD);
  if (T == 0 || H == 0) return empty({T, H, latent_dim}, DType::F32);
  MlaArgs a;
  a.pool = kv_pool.raw();
  a.pool_bf16 = kv_pool.dtype() == DType::BF16;
  a.pool_fp8 = fp8;
  if (fp8) a.kv = kv_fp8_dev(layout);
  a.b = dev_batch(batch);
  a.H = int(H);
  a.D = int(D);
  a.Dl = int(latent_dim);
  a.K = int(K);
  a.scale = scale;
  // The fast GEMM mode: the wgmma kernel (BF16 pools) for launches of many queries, the tensor-core kernel
  // (BF16 or packed FP8 pools) otherwise; the SIMT fp32 kernel in the exact mode, for fp32 pools and for
  // widths neither takes. DSSERVE_MLA_KERNEL (options().mla_kernel) pins one for A/B runs.
  const bool tc_ok = fast(kFastTcAttention) &&
                     (a.pool_bf16 || (fp8 && mla_tc_takes_fp8(int(D), int(latent_dim), a.kv.bytes))) &&
                     mla_tc_supported(int(D), int(latent_dim));
  const bool wg_ok = fast(kFastTcAttention) && a.pool_bf16 && mla_wgmma_supported(int(D), int(latent_dim));
  const MlaKernel pin = opts_.mla_kernel;
  const bool wg_pair = wg_ok && pin == MlaKernel::WgmmaPair;
  const bool wg =
      wg_pair || (wg_ok && (pin == MlaKernel::Wgmma || (pin == MlaKernel::Auto && mla_wgmma_wanted(T, H, K))));
  const bool tc = !wg && tc_ok && pin != MlaKernel::Simt;
  last_mla_path_ = wg_pair ? "wgmma-pair" : wg ? "wgmma" : tc ? "tc" : "simt";
  // bf16 queries (the bf16 absorption): the wgmma and tensor-core kernels read them as they are (both round q
  // to bf16 anyway), the wgmma kernels also write bf16 rows for mla_absorb_out; the SIMT kernel gets fp32.
  Tensor q_f32 = q_abs;
  const bool q_bf16 = q_abs.dtype() == DType::BF16 && (wg || tc);
  if (q_abs.dtype() == DType::BF16 && !q_bf16) {
    q_f32 = empty({T, H, D}, DType::F32);
    launch_bf16_to_f32(q_abs.data<uint16_t>(), q_f32.data<float>(), size_t(T * H * D), stream_);
  }
  const bool out_bf16 = q_bf16 && wg;
  Tensor out = empty({T, H, latent_dim}, out_bf16 ? DType::BF16 : DType::F32);
  const int64_t heads_per_block = wg ? mla_wgmma_heads_per_block() : tc ? mla_tc_heads_per_block() : 16;
  const int64_t head_groups = (H + heads_per_block - 1) / heads_per_block;
  const int64_t chunk = 32768;  // grid.z limit
  for (int64_t t0 = 0; t0 < T; t0 += chunk) {
    const int64_t Tc = std::min(chunk, T - t0);
    MlaArgs c = a;
    c.T = int(Tc);
    if (q_bf16) c.q_bf16 = q_abs.data<uint16_t>() + t0 * H * D;
    else c.q = q_f32.data<float>() + t0 * H * D;
    c.q_async = q_bf16 && wg && opts_.mla_q_async;
    c.index = index.data<int32_t>() + t0 * K;
    c.b.seq_of_token += t0;
    c.b.pos_of_token += t0;
    if (out_bf16) c.out_bf16 = out.data<uint16_t>() + t0 * H * latent_dim;
    else c.out = out.data<float>() + t0 * H * latent_dim;
    // Split the key list so that about two blocks per SM are busy (SIMT, each slice at least 4 tiles of 16
    // keys) or one (tensor cores: one block per SM fills its shared memory; each slice at least
    // mla_split_steps tiles, default 2, so that the per-block query load and the partials stay small next
    // to the work). Tensor cores:
    // rounded down, so that the blocks fit one wave (T = 8: 8 splits in 128 blocks, not 9 in 144 = two
    // waves of the same slice length); no split once T x head groups >= the SMs (the merge would cost more
    // than the last partial wave). From T, H, K only: no data is read, the launch stays capturable.
    int64_t nsplit, max_split;
    if (wg || tc) {
      const int64_t tile = wg ? mla_wgmma_keys_per_step() : mla_tc_keys_per_tile();
      nsplit = num_sms_ / (Tc * head_groups);
      max_split = (K + tile - 1) / tile / std::max(1, opts_.mla_split_steps);
    } else {
      nsplit = (2 * num_sms_ + Tc * head_groups - 1) / (Tc * head_groups);
      max_split = K / 64;
    }
    nsplit = std::clamp<int64_t>(nsplit, 1, std::clamp<int64_t>(max_split, 1, kMlaMaxSplit));
    c.nsplit = int(nsplit);
    Tensor po, pm, pl;
    if (nsplit > 1) {
      po = empty({nsplit * Tc * H * latent_dim}, DType::F32);
      pm = empty({nsplit * Tc * H}, DType::F32);
      pl = empty({nsplit * Tc * H}, DType::F32);
      c.part_o = po.data<float>(), c.part_m = pm.data<float>(), c.part_l = pl.data<float>();
    }
    // profile: the attention kernel and the split merge timed apart (tensor-core path)
    LaunchTimer timer(profile_, stream_, 3);
    timer.mark();
    if (wg || tc) {
      if (wg_pair) launch_mla_wgmma_pair(c, stream_);
      else if (wg) launch_mla_wgmma(c, stream_);
      else launch_mla_tc(c, stream_);
      timer.mark();
      if (nsplit > 1) launch_mla_combine(c, stream_);
    } else {
      launch_mla_absorbed(c, stream_);
      timer.mark();
    }
    check_launch("mla_attention_absorbed");
    timer.mark();
    if (timer.on()) {
      const std::vector<float> us = timer.intervals_us();
      last_mla_us_[0] = us[0], last_mla_us_[1] = us[1];
      spdlog::debug("mla_attention_absorbed ({}): {} queries x {} heads, K {}, nsplit {}: attention {:.1f} us, "
                    "merge {:.1f} us", last_mla_path_, Tc, H, K, nsplit, us[0], us[1]);
    }
  }
  return out;
}

// Auto takes the wgmma kernel wherever it applies: on the H200 it beat the mma.sync kernel at every shape
// measured, 1.2x for one decode query through 2.5x for 128-512 and 2.7-2.9x for 4-8K-query prefills
// (128 heads, 2048 keys; docs/PERF.md "Sparse MLA on wgmma"). The shape stays an argument for a rule to come.
bool CudaBackend::mla_wgmma_wanted(int64_t, int64_t, int64_t) const { return true; }

Tensor CudaBackend::attention_expanded(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& index,
                                       const AttnBatch& batch, const std::vector<int32_t>& key_row0, float scale) {
  const int64_t T = q.dim(0), H = q.dim(1), Dqk = q.dim(2), Dv = v.dim(2), K = index.dim(1);
  DS_CHECK(k.dim(1) == H && k.dim(2) == Dqk && v.dim(1) == H && v.dim(0) == k.dim(0) && index.dim(0) == T &&
               index.dtype() == DType::I32,
           "attention_expanded: q {}, k {}, v {}, index {}", q.describe(), k.describe(), v.describe(), index.describe());
  Tensor out = empty({T, H, Dv}, DType::F32);
  if (T == 0 || H == 0) return out;
  Tensor scores = empty({T * H * std::max<int64_t>(K, 1)}, DType::F32);
  ExpandedArgs a;
  a.q = q.data<float>();
  a.k = k.data<float>();
  a.v = v.data<float>();
  a.index = index.data<int32_t>();
  a.seq_of_token = upload_i32(batch.seq_of_token);
  a.key_row0 = upload_i32(key_row0);
  a.scores = scores.data<float>();
  a.out = out.data<float>();
  a.T = int(T), a.H = int(H), a.Dqk = int(Dqk), a.Dv = int(Dv), a.K = int(K), a.Nk = int(k.dim(0));
  a.scale = scale;
  launch_attention_expanded(a, stream_);
  check_launch("attention_expanded");
  return out;
}

// Fast mode: K/V packed once to bf16 (head-major), then the tensor-core kernel over query tiles of one
// sequence's consecutive positions, longest first. Exact mode (or widths the kernel is not built for): K/V
// packed to fp32 per-head rows and the SIMT expanded kernel over a causal index.
Tensor CudaBackend::attention_mha_causal(const Tensor& q, const Tensor& kvb, const Tensor& rope, int64_t rope_col0,
                                         int64_t v_dim, const AttnBatch& batch, const std::vector<int32_t>& key_row0,
                                         float scale) {
  const int64_t T = q.dim(0), H = q.dim(1), Dq = q.dim(2), N = kvb.dim(0), Dv = v_dim;
  const int64_t per_head = H > 0 ? kvb.row_size() / H : 0, Dn = per_head - Dv, Dr = Dq - Dn;
  DS_CHECK(q.dtype() == DType::F32 && kvb.dtype() == DType::F32 &&
               (rope.dtype() == DType::F32 || rope.dtype() == DType::BF16) && kvb.row_size() == H * per_head &&
               Dn > 0 && Dr >= 0 && rope.dim(0) == N && rope_col0 + Dr <= rope.row_size() &&
               int64_t(batch.pos_of_token.size()) == T,
           "attention_mha_causal: q {}, kvb {}, rope {} (col {}), v_dim {}", q.describe(), kvb.describe(),
           rope.describe(), rope_col0, Dv);
  DS_CHECK(Dn % 8 == 0 && Dr % 8 == 0 && Dv % 8 == 0 && rope_col0 % 8 == 0 && rope.row_size() % 8 == 0,
           "attention_mha_causal: widths {} / {} / {} (column {}) must be multiples of 8", Dn, Dr, Dv, rope_col0);
  Tensor out = empty({T, H, Dv}, DType::F32);
  if (T == 0 || H == 0) return out;
  // Query tiles: runs of tokens of one sequence at consecutive positions, cut at the tile size.
  const int32_t BM = mha_tc_queries_per_tile();
  std::vector<MhaTile> tiles;
  for (int64_t t = 0; t < T; ++t) {
    const int32_t s = batch.seq_of_token[t], p = batch.pos_of_token[t];
    DS_CHECK(s >= 0 && size_t(s) < key_row0.size() && p >= 0 && key_row0[s] + int64_t(p) < N,
             "attention_mha_causal: token {} (sequence {}, position {}) has no key rows", t, s, p);
    MhaTile* last = tiles.empty() ? nullptr : &tiles.back();
    if (last && batch.seq_of_token[last->t0] == s && last->pos0 + last->nq == p && last->nq < BM) ++last->nq;
    else tiles.push_back({int32_t(t), 1, p, key_row0[s]});
  }
  MhaPackArgs pk;
  pk.kvb = kvb.data<float>();
  pk.rope = rope.raw();
  pk.rope_bf16 = rope.dtype() == DType::BF16;
  pk.rope_stride = rope.row_size();
  pk.rope_col0 = rope_col0;
  pk.N = int(N), pk.H = int(H), pk.Dn = int(Dn), pk.Dr = int(Dr), pk.Dv = int(Dv);
  const bool tc = fast(kFastTcAttention) && mha_tc_supported(int(Dn), int(Dr), int(Dv));
  last_mha_path_ = tc ? "tc" : "simt";
  if (!tc) {
    Tensor k = empty({N, H, Dq}, DType::F32), v = empty({N, H, Dv}, DType::F32);
    launch_mha_pack_f32(pk, k.data<float>(), v.data<float>(), stream_);
    check_launch("mha pack");
    return attention_expanded(q, k, v, causal_index(batch), batch, key_row0, scale);
  }
  // Longest first (stable): the last wave is made of short tiles.
  std::stable_sort(tiles.begin(), tiles.end(),
                   [](const MhaTile& a, const MhaTile& b) { return a.pos0 + a.nq > b.pos0 + b.nq; });
  std::vector<int32_t> words;
  for (const MhaTile& m : tiles) words.insert(words.end(), {m.t0, m.nq, m.pos0, m.krow0});
  Tensor k = empty({H, N, Dq}, DType::BF16), v = empty({H, N, Dv}, DType::BF16);
  launch_mha_pack_bf16(pk, k.data<uint16_t>(), v.data<uint16_t>(), stream_);
  check_launch("mha pack");
  MhaArgs a;
  a.q = q.data<float>();
  a.k = k.data<uint16_t>();
  a.v = v.data<uint16_t>();
  a.tiles = reinterpret_cast<const MhaTile*>(upload_i32(words));
  a.ntiles = int(tiles.size());
  a.N = int(N), a.H = int(H);
  a.scale = scale;
  a.out = out.data<float>();
  DS_CHECK(a.H <= kMaxGridY, "attention_mha_causal: {} heads exceed the grid", H);
  launch_mha_tc(a, int(Dn), int(Dr), int(Dv), stream_);
  check_launch("attention_mha_causal");
  return out;
}

// The score kernel of one chunk (c.scores, c.L set; L = the chunk's longest context). Tensor cores in the
// fast GEMM mode where supported (FP8 wgmma for IndexerMode::Fp8 values, IndexerKernel says which); the
// SIMT fp32 kernel in the exact mode.
void CudaBackend::launch_scores(IndexerArgs& c, int64_t L, const AttnBatch& batch, bool fp8_values) {
  const IndexerKernel pin = opts_.indexer_kernel;
  const bool tc_ok = fast(kFastTcIndexer) && indexer_tc_supported(c.heads, c.head_dim) &&
                     (!c.k_fp8 || indexer_tc_takes_fp8(c.kv.bytes));
  if (tc_ok && fp8_values && indexer_wgmma_supported(c.heads, c.head_dim) && pin != IndexerKernel::Tc &&
      pin != IndexerKernel::Simt && launch_scores_wgmma(c, L, batch, pin == IndexerKernel::Wgmma))
    return;
  const bool tc = tc_ok && pin != IndexerKernel::Simt;
  last_indexer_path_ = tc ? "tc" : "simt";
  // Tiles of 64 keys per score block: as many as keep >= 2 blocks per SM (from Tc and L only: the launch
  // stays capturable). SIMT: up to 4 (one query load per 256 keys). Tensor cores: up to 32, since a block
  // loads 1 or 2 queries of 32 KB each, as much as a tile of keys.
  const int64_t groups = tc ? (c.Tc + indexer_tc_queries_per_block(c.Tc) - 1) / indexer_tc_queries_per_block(c.Tc) : c.Tc;
  c.tiles = tc ? 32 : 4;
  while (c.tiles > 1 && groups * ((L + 64 * c.tiles - 1) / (64 * c.tiles)) < 2 * num_sms_) c.tiles /= 2;
  if (tc) launch_indexer_scores_tc(c, stream_);
  else launch_indexer_scores(c, stream_);
  check_launch("indexer scores");
}

// The wgmma kernel's pre-passes and scores for one chunk, when Auto wants it (or pinned) and its key
// buffer fits; false (nothing launched) otherwise. Key rows: per sequence with scored queries in the chunk,
// positions 0 .. its largest scored position (a captured step: max_context for each of the chunk's
// sequences, the positions being the replay's), in whole tiles.
bool CudaBackend::launch_scores_wgmma(IndexerArgs& c, int64_t L, const AttnBatch& batch, bool pinned) {
  const bool capped = batch.max_context > 0;
  const int64_t max_ctx = context_width(batch), KS = indexer_wgmma_keys_per_tile();
  const size_t nseq = batch.page_tables.size();
  std::vector<int32_t> need(nseq, 0);
  int64_t seqs = 0;
  for (int64_t t = c.t0; t < c.t0 + c.Tc; ++t) {
    const size_t s = size_t(batch.seq_of_token[size_t(t)]);
    const int64_t p1 = int64_t(batch.pos_of_token[size_t(t)]) + 1;
    const int64_t n = capped ? max_ctx : p1 > c.topk ? p1 : 0;
    seqs += need[s] == 0 && n > 0;
    need[s] = int32_t(std::max<int64_t>(need[s], n));
  }
  if (!pinned && !indexer_wgmma_wanted(c.Tc, std::max<int64_t>(seqs, 1))) return false;
  std::vector<int32_t> seq_keys(2 * std::max<size_t>(nseq, 1), 0), tile_seq;
  for (size_t s = 0; s < nseq; ++s) {
    seq_keys[2 * s] = int32_t(tile_seq.size() * KS), seq_keys[2 * s + 1] = need[s];
    tile_seq.insert(tile_seq.end(), size_t((need[s] + KS - 1) / KS), int32_t(s));
  }
  if (tile_seq.empty()) tile_seq.push_back(-1);  // nothing scored: one zero tile keeps the buffers non-empty
  const int64_t rows = int64_t(tile_seq.size()) * KS;
  if (rows * (c.head_dim + 4) > (int64_t(512) << 20)) return false;  // decode batches at long contexts: tc
  last_indexer_path_ = "wgmma";
  // Block shape: 4 tokens x up to 32 tiles of 128 keys (measured 3 % faster than 16 tiles at 8K and 16K
  // prefill; 8 tokens per block gained < 0.5 % more: docs/PERF.md). DSSERVE_INDEXER_WGMMA_SHAPE=qt,tiles
  // (qt 4 or 8) for experiments (gpu_bench indexer-wgmma). Each score is computed alike in every shape.
  int64_t QT = 4, max_tiles = 32;
  if (const char* e = std::getenv("DSSERVE_INDEXER_WGMMA_SHAPE")) {
    int qt = 0, tl = 0;
    DS_CHECK(std::sscanf(e, "%d,%d", &qt, &tl) == 2 && (qt == 4 || qt == 8) && tl >= 1 && tl <= 64,
             "DSSERVE_INDEXER_WGMMA_SHAPE='{}': expected qt,tiles with qt 4 or 8, tiles 1..64", e);
    QT = qt, max_tiles = tl;
  }
  const int64_t Tq = (c.Tc + 7) / 8 * 8;
  Tensor q8 = empty({Tq * 64 * c.head_dim}, DType::U8), wq = empty({Tq * 64}, DType::F32);
  Tensor k8 = empty({rows * c.head_dim}, DType::U8), ksc = empty({rows}, DType::F32);
  IndexerWgmmaBufs b;
  b.q8 = q8.data<uint8_t>(), b.wq = wq.data<float>(), b.k8 = k8.data<uint8_t>(), b.ksc = ksc.data<float>();
  b.seq_keys = upload_i32(seq_keys), b.tile_seq = upload_i32(tile_seq);
  b.rows = int(rows);
  b.qt = int(QT), b.tq = int(Tq);
  // Tiles of 128 keys per block: up to max_tiles, as many as keep >= 2 blocks per SM (1 fits at a time).
  const int64_t groups = (c.Tc + QT - 1) / QT;
  c.tiles = int(max_tiles);
  while (c.tiles > 1 && groups * ((L + KS * c.tiles - 1) / (KS * c.tiles)) < 2 * num_sms_) c.tiles /= 2;
  launch_indexer_scores_wgmma(c, b, stream_);
  check_launch("indexer scores (wgmma)");
  return true;
}

Tensor CudaBackend::indexer_scores(const Tensor& q, const Tensor& w, const Tensor& k_pool, const AttnBatch& batch,
                                   int64_t heads, int64_t head_dim, int64_t topk, bool fp8_values) {
  const int64_t T = q.dim(0);
  const bool fp8 = k_pool.dtype() == DType::U8;
  const KvFp8Layout layout = KvFp8Layout::indexer(head_dim);
  DS_CHECK(q.row_size() == heads * head_dim && w.row_size() == heads &&
               k_pool.row_size() == (fp8 ? layout.bytes() : head_dim) && int64_t(batch.pos_of_token.size()) == T &&
               T > 0 && T <= kMaxGridY,
           "indexer_scores: q {}, w {}, k pool {}", q.describe(), w.describe(), k_pool.describe());
  int64_t L = 1;
  for (int32_t p : batch.pos_of_token) L = std::max<int64_t>(L, p + 1);
  IndexerArgs c;
  c.q = q.data<float>();
  c.w = w.data<float>();
  set_index_keys(c, k_pool, layout);
  c.b = dev_batch(batch);
  c.heads = int(heads), c.head_dim = int(head_dim), c.topk = int(topk);
  c.t0 = 0, c.Tc = int(T);
  c.L = int((L + 7) / 8 * 8);
  Tensor scores = empty({T, int64_t(c.L)}, DType::F32);
  c.scores = scores.data<float>();
  launch_scores(c, L, batch, fp8_values);
  return scores;
}

Tensor CudaBackend::indexer_topk(const Tensor& q, const Tensor& w, const Tensor& k_pool, const AttnBatch& batch,
                                 int64_t heads, int64_t head_dim, int64_t topk, bool fp8_values) {
  const int64_t T = q.dim(0);
  // A U8 pool holds packed FP8 keys (backend/kv_fp8.h): the score kernels dequantise them.
  const bool fp8 = k_pool.dtype() == DType::U8;
  const KvFp8Layout layout = KvFp8Layout::indexer(head_dim);
  DS_CHECK(q.row_size() == heads * head_dim && w.row_size() == heads &&
               k_pool.row_size() == (fp8 ? layout.bytes() : head_dim),
           "indexer: q {}, w {}, k pool {} do not match {} heads x {}", q.describe(), w.describe(), k_pool.describe(),
           heads, head_dim);
  DS_CHECK(head_dim % 4 == 0 && q.dtype() == DType::F32 && w.dtype() == DType::F32 &&
               (k_pool.dtype() == DType::F32 || fp8) &&
               int64_t(batch.pos_of_token.size()) == T && topk > 0,
           "indexer: unsupported inputs (head_dim {} must be a multiple of 4, all F32)", head_dim);
  // A captured step sizes everything for its max_context (the kernels bound each row by its position).
  const int64_t max_ctx = context_width(batch);
  const bool capped = batch.max_context > 0;
  auto ctx_of = [&](int64_t t) -> int64_t { return capped ? max_ctx : batch.pos_of_token[t] + 1; };
  const int64_t Kout = std::min(topk, max_ctx);
  Tensor index = empty({T, Kout}, DType::I32);
  if (T == 0) return index;
  IndexerArgs a;
  a.q = q.data<float>();
  a.w = w.data<float>();
  set_index_keys(a, k_pool, layout);
  a.b = dev_batch(batch);
  a.heads = int(heads);
  a.head_dim = int(head_dim);
  a.topk = int(topk);
  a.out = index.data<int32_t>();
  a.Kout = int(Kout);
  last_indexer_us_[0] = last_indexer_us_[1] = 0.f;
  const int64_t budget = int64_t(64) << 20;  // score floats per chunk (256 MiB)
  for (int64_t t0 = 0; t0 < T;) {
    // Grow the chunk while its scores fit the budget.
    int64_t t1 = t0, L = 1;
    while (t1 < T && t1 - t0 < kMaxGridY) {
      const int64_t L2 = std::max<int64_t>(L, ctx_of(t1));
      if ((t1 - t0 + 1) * L2 > budget && t1 > t0) break;
      L = L2;
      ++t1;
    }
    bool any = false;
    for (int64_t t = t0; t < t1; ++t) any |= ctx_of(t) > topk;
    LaunchTimer timer(profile_, stream_, 3);
    timer.mark();
    IndexerArgs c = a;
    c.t0 = int(t0);
    c.Tc = int(t1 - t0);
    c.L = int((L + 7) / 8 * 8);  // 32-byte aligned score rows (vector loads in the top-k)
    Tensor scores;
    if (any) {
      scores = empty({int64_t(c.Tc) * c.L}, DType::F32);
      c.scores = scores.data<float>();
      launch_scores(c, L, batch, fp8_values);
    }
    timer.mark();
    // Few long rows: split each row over many blocks (one block per row would leave the GPU idle).
    const int64_t slices = std::min<int64_t>((2 * num_sms_ + c.Tc - 1) / c.Tc, (L + 4095) / 4096);
    if (any && slices >= 4) {
      Tensor work = empty({int64_t(indexer_topk_split_work_bytes(c.Tc, int(slices)))}, DType::U8);
      launch_indexer_topk_split(c, int(slices), work.raw(), stream_);
    } else {
      launch_indexer_topk(c, stream_);
    }
    check_launch("indexer top-k");
    timer.mark();
    if (timer.on()) {
      const std::vector<float> us = timer.intervals_us();
      last_indexer_us_[0] += us[0], last_indexer_us_[1] += us[1];
      spdlog::info("indexer chunk of {} queries, L {}: scores ({}) {:.1f} us, top-k {:.1f} us", c.Tc, c.L,
                   last_indexer_path_, us[0], us[1]);
    }
    t0 = t1;
  }
  return index;
}

void CudaBackend::hadamard_fp8_round(Tensor& x, int64_t row_len) {
  const int64_t n = row_len;
  DS_CHECK(n > 0 && (n & (n - 1)) == 0 && n <= 1024 && x.numel() % n == 0,
           "Hadamard rows must be a power of two <= 1024, got {}", n);
  DS_CHECK(x.device() == Device::CUDA && x.dtype() == DType::F32, "hadamard_fp8_round: x is {}", x.describe());
  launch_hadamard_fp8_round(x.data<float>(), int(x.numel() / n), int(n), stream_);
  check_launch("hadamard_fp8_round");
}

void CudaBackend::moe_route(const Tensor& router_logits, const Tensor& bias, const MoeRouting& cfg, Tensor* ids,
                            Tensor* weights) {
  const int64_t T = router_logits.dim(0), E = router_logits.dim(1), G = cfg.n_group, per_group = E / G;
  DS_CHECK(E % G == 0 && cfg.topk_group <= G && cfg.top_k <= cfg.topk_group * per_group,
           "moe routing: {} experts, {} groups, topk_group {}, top_k {} are inconsistent", E, G, cfg.topk_group,
           cfg.top_k);
  DS_CHECK(G <= 32 && cfg.top_k <= 32 && E <= 1536 && bias.numel() == E && router_logits.dtype() == DType::F32,
           "moe routing on the GPU: {} groups / top_k {} / {} experts unsupported", G, cfg.top_k, E);
  *ids = empty({T, cfg.top_k}, DType::I32);
  *weights = empty({T, cfg.top_k}, DType::F32);
  launch_moe_route(router_logits.data<float>(), bias.data<float>(), int(T), int(E), int(G), cfg.topk_group, cfg.top_k,
                   cfg.norm_topk_prob, cfg.routed_scaling_factor, ids->data<int32_t>(), weights->data<float>(),
                   stream_);
  check_launch("moe_route");
}

}  // namespace ds::backend::cuda
