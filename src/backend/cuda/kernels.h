// Launchers of the CUDA backend's kernels: plain pointers and sizes, no ds:: types, so that the .cu
// files stay light for nvcc. The backend (cuda_backend*.cpp) checks shapes and launch errors.
// Activations are fp32 throughout; weights FP8 e4m3 (with 128x128 block scales), BF16 or F32.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace ds::backend::cuda {

enum class WType : int { FP8 = 0, BF16 = 1, F32 = 2 };

// A weight matrix [rows, cols] row-major. FP8: value = fp8 * scale[(r/128) * scale_pitch + c/128].
struct WeightRef {
  const void* data = nullptr;
  WType type = WType::F32;
  const float* scale = nullptr;
  int scale_pitch = 0;
  int rows = 0, cols = 0;
};

// Page tables of a step on the device: keys of sequence s at position p are in pool row
// pt[pt_off[s] + p / page_size] * page_size + p % page_size (p / page_size < pt_off[s+1] - pt_off[s]).
struct DevBatch {
  const int32_t* seq_of_token = nullptr;
  const int32_t* pos_of_token = nullptr;
  const int32_t* pt = nullptr;
  const int32_t* pt_off = nullptr;
  int page_size = 1;
};

// ---- elementwise / rows (k_elementwise.cu) ----
void launch_fill_u32(void* p, uint32_t value, size_t words, cudaStream_t st);
// Rows of ids in [first, first + rows) (the table holds that part of the vocabulary); zero rows for the others.
void launch_embedding(const void* table, bool table_bf16, const int32_t* ids, int T, int H, float* out, int first,
                      int rows, cudaStream_t st);
void launch_rmsnorm(const float* x, float* residual, const float* w, float* y, int T, int n, float eps,
                    cudaStream_t st);  // residual != null: residual += x first, y = rmsnorm(residual)
void launch_layernorm(const float* x, const float* w, const float* b, float* y, int T, int n, float eps,
                      cudaStream_t st);
void launch_add(float* y, const float* x, size_t n, cudaStream_t st);
void launch_scale(float* y, float s, size_t n, cudaStream_t st);
void launch_silu_mul(const float* g, const float* u, float* y, size_t n, cudaStream_t st);
constexpr int kMaxRopeHalf = 256;
struct RopeFreqs {
  float inv_freq[kMaxRopeHalf];
};
void launch_rope(float* x, int T, int row, int col0, int head_stride, int nheads, int rot_dim, const int32_t* pos,
                 const RopeFreqs& f, float attention_factor, bool interleaved, cudaStream_t st);
void launch_f32_to_bf16(const float* x, uint16_t* y, size_t n, cudaStream_t st);
void launch_bf16_to_f32(const uint16_t* x, float* y, size_t n, cudaStream_t st);
// pool[slots[t], col0 : col0+n] = rows[t, :]   (pool row width D)
void launch_cache_write(float* pool, int D, int col0, const float* rows, int n, const int32_t* slots, int T,
                        cudaStream_t st);
// out[i, :] = src[idx[i], :]  (row width D)
void launch_gather_rows(const float* src, int D, const int32_t* idx, int n, float* out, cudaStream_t st);
// A column range of every row: dst[t, 0:width] = src[t, 0:width] (bytes; row t at t * pitch), T rows. A kernel
// rather than cudaMemcpy2DAsync so that it joins the step's chain of dependent launches (pdl.cuh).
void launch_copy_cols(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width, int64_t T,
                      cudaStream_t st);
// Raw rows of row_bytes bytes: out[i] = pool[idx[i]] (gather) / pool[idx[i]] = in[i] (scatter).
void launch_gather_bytes(const void* pool, size_t row_bytes, const int32_t* idx, int n, void* out, cudaStream_t st);
void launch_scatter_bytes(void* pool, size_t row_bytes, const int32_t* idx, int n, const void* in, cudaStream_t st);
// The same two for BF16 pools (rows fp32 outside the pool).
void launch_cache_write_bf16(uint16_t* pool, int D, int col0, const float* rows, int n, const int32_t* slots, int T,
                             cudaStream_t st);
void launch_gather_rows_bf16(const uint16_t* src, int D, const int32_t* idx, int n, float* out, cudaStream_t st);
// Packed FP8 KV rows (backend/kv_fp8.h; device helpers in kv_fp8.cuh, kernels in k_kv_fp8.cu).
struct KvFp8Dev {
  int quant_dim = 0, tile = 128, bf16_dim = 0, bytes = 0;
  bool pow2 = false;
};
// Quantises quant [T, quant_dim] (+ rest [T, bf16_dim] as bf16) into pool rows slots[t] (-1: skipped).
void launch_cache_write_fp8(uint8_t* pool, const KvFp8Dev& L, const float* quant, const float* rest,
                            const int32_t* slots, int T, cudaStream_t st);
// out[i, :] = the dequantised row idx[i] (quant_dim + bf16_dim floats).
void launch_gather_fp8(const uint8_t* pool, const KvFp8Dev& L, const int32_t* idx, int n, float* out,
                       cudaStream_t st);
// ---- fused per-token K/V steps of the attention block (k_kv_fused.cu; Backend::mla_kv_write,
// Backend::indexer_key_write, Backend::mla_absorb_q_rope): one block per token, each equal bit for bit to
// the chain of separate kernels it replaces (row_math.cuh) ----
// Where such a kernel stores a token's row: pool row slots[t] (-1: nowhere) of an F32 or BF16 pool (D
// elements per row) or a packed FP8 pool (layout fp8).
enum class KvPoolKind : int { F32 = 0, BF16 = 1, FP8 = 2 };
struct KvDst {
  void* pool = nullptr;
  KvPoolKind kind = KvPoolKind::F32;
  int D = 0;
  KvFp8Dev fp8;
  const int32_t* slots = nullptr;
};
constexpr int kFusedMaxLatent = 2048;    // latent widths the fused latent write takes (shared memory)
constexpr int kFusedMaxIndexDim = 1024;  // indexer head widths the fused key write takes
// kv [T, Dl + Dr] (rows 16-byte aligned, Dl % 4 == 0): the latent part RMS-normalised (norm_w, eps) with the
// arithmetic of the vectorised rmsnorm kernel, the rope part rotated (interleaved) at pos[t]; the pool's
// row gets [c | k_rope] (F32 / BF16 at columns 0 and Dl; FP8: the latent layout of (Dl, Dr)).
void launch_mla_kv_write(const float* kv, int T, int Dl, int Dr, const float* norm_w, float eps, const int32_t* pos,
                         const RopeFreqs& f, float af, const KvDst& dst, cudaStream_t st);
// k [T, Di] (Di <= kFusedMaxIndexDim; a power of two with hadamard): LayerNorm (ln_w, ln_b, eps), the first
// rot_dim columns rotated (half-split) at pos[t], with hadamard the Hadamard + e4m3 rounding of
// launch_hadamard_fp8_round; the pool's row gets the key (F32 / BF16 at column 0; FP8: the indexer layout).
void launch_indexer_key_write(const float* k, int T, int Di, const float* ln_w, const float* ln_b, float eps,
                              int rot_dim, const int32_t* pos, const RopeFreqs& f, float af, bool hadamard,
                              const KvDst& dst, cudaStream_t st);
// mla_absorb_q's rope part, rotated on the way: out[t, h, out_col0 + j] = q[t, h, Dn + j] rotated
// (interleaved) at pos[t], j < Dr; q rows of H heads of qd floats, out rows of H heads of out_hd floats.
void launch_rope_copy(const float* q, int T, int H, int qd, int Dn, int Dr, float* out, int out_hd, int out_col0,
                      const int32_t* pos, const RopeFreqs& f, float af, cudaStream_t st);
// The bf16 absorption's inputs from q rows [T, H, qd = Dn + Dr] (fp32): nope[t, h, :] = q[t, h, :Dn] in bf16
// (rows of Dn), and the rope part rotated as by launch_rope_copy into out[t, h, out_col0 + j] in bf16.
void launch_q_split_bf16(const float* q, int T, int H, int qd, int Dn, int Dr, uint16_t* nope, uint16_t* out,
                         int out_hd, int out_col0, const int32_t* pos, const RopeFreqs& f, float af, cudaStream_t st);
// y[idx[i], :] += w[i] * x[i, :]
void launch_scatter_add_rows(float* y, int D, const int32_t* idx, const float* w, const float* x, int n,
                             cudaStream_t st);
void launch_causal_index(const int32_t* pos, int T, int K, int32_t* out, cudaStream_t st);

// ---- GEMM (k_gemv.cu, k_gemm.cu) ----
constexpr int kGemvMaxM = 32;
// The small-M weight-streaming kernels: tensor cores (TF32, fp32-accurate) for FP8 / BF16 weights up to
// 32 tokens, SIMT for F32 weights up to 8. Supported when K is a multiple of 16 (F32: 4).
int gemv_max_m(const WeightRef& w);
bool gemv_supported(const WeightRef& w);
// The tensor-core GEMV's shape: R row tiles of 16 per warp, U 64-column steps in flight per lane, and
// k_gemv.cu's MODE flags (2: truncation split of the activations, 8: plain weight loads). {0, 0} picks
// the default for the weight type and M (gemv_tile); others exist for gpu_bench's comparisons: at M <= 8
// {1, 2}, {1, 4}, {2, 2}, {2, 4} (FP8 only) with mode 0, {2, 2} with mode 2 or 8, {1, 2} with mode 8;
// above 8 tokens {1, 2} only.
struct GemvTile {
  int R = 0, U = 0;
  int mode = 0;
};
GemvTile gemv_tile(const WeightRef& w, int M, GemvTile t = {});
// How many K slices (grid.y) the GEMV uses for this weight and M; > 1 needs `partial` of ksplit * M * N
// floats and `counters`: kGemvMaxCounters zero-initialised ints (the kernel leaves them zero).
int gemv_ksplit(const WeightRef& w, int M, int num_sms, GemvTile t = {});
constexpr int kGemvMaxCounters = 4096;
// y[M, N] = x[M, K] . W^T, M <= gemv_max_m(w), W [N, K]. x rows contiguous (pitch K), y pitch N.
void launch_gemv(const float* x, int M, const WeightRef& w, float* y, float* partial, int* counters, int ksplit,
                 cudaStream_t st, GemvTile t = {});
// Several weights that read the same x in one launch (y[i] = x . W_i^T): the small projections of a layer
// (q_a, kv_a, the indexer key) cost ~5-9 us each alone, mostly latency. The weights share the type, K and
// the tile gemv_tile picks for them (gemv_groupable); `partial` holds ksplit * M * N_i floats per weight,
// one after another; ksplit from the group's total blocks.
constexpr int kGemvMaxGroup = 4;
struct GemvGroup {
  WeightRef w[kGemvMaxGroup];
  float* y[kGemvMaxGroup] = {};
  int count = 0;
};
bool gemv_groupable(const GemvGroup& g, int M);
int gemv_ksplit(const GemvGroup& g, int M, int num_sms, GemvTile t = {});
void launch_gemv_group(const float* x, int M, const GemvGroup& g, float* partial, int* counters, int ksplit,
                       cudaStream_t st, GemvTile t = {});
// Batched SIMT GEMM, fp32 accumulation, for any shape:
//   C[b][m, n] = sum_k A[b][m, k] * Wv(b, k, n)
//   A[b][m, k] at a + b * a_bstride + m * lda + k;  C[b][m, n] at c + b * c_bstride + m * ldc + n
//   trans_w (y = x W^T): Wv(b, k, n) = W[w_row0 + b * w_row_bstride + n, k]
//   !trans_w (y = x W):  Wv(b, k, n) = W[w_row0 + b * w_row_bstride + k, n]
struct GemmArgs {
  const float* a = nullptr;
  long long a_bstride = 0;
  int lda = 0;
  float* c = nullptr;
  long long c_bstride = 0;
  int ldc = 0;
  int M = 0, N = 0, K = 0, batch = 1;
  int w_row0 = 0, w_row_bstride = 0;
  bool trans_w = true;
};
void launch_gemm_simt(const GemmArgs& g, const WeightRef& w, cudaStream_t st);
// out [rows, w.cols] fp32 = weight rows row0 .. row0 + rows - 1, dequantised (FP8 x block scale).
void launch_dequant_rows(const WeightRef& w, int row0, int rows, float* out, cudaStream_t st);
// The same rounded to bf16 (the bf16 absorption's weight: one pass, half the bytes of the fp32 copy).
void launch_dequant_rows_bf16(const WeightRef& w, int row0, int rows, uint16_t* out, cudaStream_t st);
// The same batched product for M <= 8 rows and FP8 weights (k_head_gemv.cu: the MLA absorption at decode
// sizes). Returns false, launching nothing, for shapes it does not take (then use launch_gemm_simt).
bool launch_head_gemv(const GemmArgs& g, const WeightRef& w, cudaStream_t st);

// ---- FP8 activation quantisation (k_quant.cu) ----
// x [M, K] fp32 -> q e4m3 [Mp, K] and one power-of-two scale per token per 128 columns (K % 128 == 0):
// scale of (m, kb) at s[kb * s_pitch + m] when m_fastest, else s[m * s_pitch + kb]. Rows M..Mp-1 (padding
// for the GEMM) get zeros and scale 1. dq (optional, [M, K]) receives the dequantised values.
void launch_quant_fp8_act(const float* x, int M, int Mp, int K, uint8_t* q, float* s, int s_pitch, bool m_fastest,
                          float* dq, cudaStream_t st);
// DeepSeek's indexer numerics on rows of n (power of two, 2..1024) in place.
void launch_hadamard_fp8_round(float* x, int rows, int n, cudaStream_t st);

// ---- attention (k_attention.cu) ----
struct MlaArgs {
  const float* q = nullptr;  // [T, H, D]
  // Instead of q / out: bf16 queries (the fast mode's bf16 absorption), and with nsplit == 1 bf16 output
  // rows. The wgmma kernels only (they round q to bf16 anyway: the same operands, half the bytes).
  const uint16_t* q_bf16 = nullptr;
  uint16_t* out_bf16 = nullptr;
  // The wgmma kernels with q_bf16: the query tiles copied by cp.async, every chunk in flight at once (one
  // round trip to memory instead of four batches of loads; CudaOptions::mla_q_async).
  bool q_async = false;
  const void* pool = nullptr;  // [rows, D] fp32 or bf16, or packed FP8 rows [rows, kv.bytes]
  bool pool_bf16 = false;
  bool pool_fp8 = false;
  KvFp8Dev kv;  // pool_fp8: the latent layout
  const int32_t* index = nullptr;  // [T, K] positions, -1 padded
  DevBatch b;
  float* out = nullptr;  // [T, H, Dl]
  int T = 0, H = 0, D = 0, Dl = 0, K = 0;
  float scale = 1.f;
  // split-K partials (nsplit > 1): o [nsplit, T, H, Dl], m/l [nsplit, T, H]
  int nsplit = 1;
  float *part_o = nullptr, *part_m = nullptr, *part_l = nullptr;
};
constexpr int kMlaMaxDl = 512;
constexpr int kMlaMaxD = 1024;
constexpr int kMlaMaxSplit = 512;  // nsplit <= this (the combine's shared arrays)
size_t mla_smem_bytes(int D);
void launch_mla_absorbed(const MlaArgs& a, cudaStream_t st);
// Merges the nsplit partials (part_o, part_m, part_l) into out; launch_mla_absorbed / launch_mla_tc call it.
void launch_mla_combine(const MlaArgs& a, cudaStream_t st);
// The tensor-core form (k_mla_tc.cu, BF16 pools only): 64 heads per block, key tiles of 32, the same
// split-K partials; with nsplit > 1 the caller launches launch_mla_combine next. Supported when
// mla_tc_supported(D, Dl): (576, 512) (the model) and (320, 256) (the demo preset).
bool mla_tc_supported(int D, int Dl);
// Whether the tensor-core kernel reads packed FP8 pools of these widths (else they go to the SIMT kernel).
bool mla_tc_takes_fp8(int D, int Dl, int row_bytes);
int mla_tc_heads_per_block();
int mla_tc_keys_per_tile();
void launch_mla_tc(const MlaArgs& a, cudaStream_t st);
// The Hopper wgmma form (k_mla_wgmma.cu, BF16 pools only, sm_90a): 64 heads of one token per block, steps of
// 64 keys, FlashMLA's numerics (bf16 queries and weights, fp32 accumulation and softmax); the same split-K
// partials as launch_mla_tc (nsplit > 1: the caller launches launch_mla_combine next). Supported widths as
// mla_tc_supported.
bool mla_wgmma_supported(int D, int Dl);
int mla_wgmma_heads_per_block();
int mla_wgmma_keys_per_step();
void launch_mla_wgmma(const MlaArgs& a, cudaStream_t st);
// The diagnostic build's cycle counters of launch_mla_wgmma (cmake -DDSSERVE_MLA_PHASES=ON,
// mla_phase_clock.cuh): [role][slot] totals over every block since the last reset, copied to out (if not
// null; 3 x 16 values), then zeroed if reset. False in the normal build (no counters exist).
bool mla_wgmma_phase_totals(unsigned long long* out, bool reset);
// The same op in pairs of key blocks (k_mla_wgmma_pair.cu: FlashMLA's schedule, both consumer warpgroups
// computing scores); same widths, heads per block, key chunking, partials and numerics as launch_mla_wgmma.
void launch_mla_wgmma_pair(const MlaArgs& a, cudaStream_t st);
// Its diagnostic build's counters, as mla_wgmma_phase_totals.
bool mla_wgmma_pair_phase_totals(unsigned long long* out, bool reset);
struct ExpandedArgs {
  const float *q = nullptr, *k = nullptr, *v = nullptr;  // q [T,H,Dqk], k [Nk,H,Dqk], v [Nk,H,Dv]
  const int32_t* index = nullptr;                         // [T, K]
  const int32_t* seq_of_token = nullptr;
  const int32_t* key_row0 = nullptr;  // per sequence
  float* scores = nullptr;            // scratch [T, H, K]
  float* out = nullptr;               // [T, H, Dv]
  int T = 0, H = 0, Dqk = 0, Dv = 0, K = 0, Nk = 0;
  float scale = 1.f;
};
void launch_attention_expanded(const ExpandedArgs& a, cudaStream_t st);

// ---- dense causal MHA prefill (k_mha_tc.cu) ----
// Per-head K = [K_nope | shared rope key] and V of N key rows, read from the kv_b product kvb [N, H*(Dn+Dv)]
// (fp32, per head [K_nope | V]) and the rope key at rope[n * rope_stride + rope_col0 ..] (fp32 or bf16),
// written as bf16 head-major (k [H, N, Dn+Dr], v [H, N, Dv]: the tensor-core kernel's tiles) or fp32
// row-major (k [N, H, Dn+Dr], v [N, H, Dv]: attention_expanded's inputs). Dn, Dr, Dv multiples of 8.
struct MhaPackArgs {
  const float* kvb = nullptr;
  const void* rope = nullptr;
  bool rope_bf16 = false;
  int64_t rope_stride = 0, rope_col0 = 0;
  int N = 0, H = 0, Dn = 0, Dr = 0, Dv = 0;
};
void launch_mha_pack_bf16(const MhaPackArgs& a, uint16_t* k, uint16_t* v, cudaStream_t st);  // bf16 bits
void launch_mha_pack_f32(const MhaPackArgs& a, float* k, float* v, cudaStream_t st);
// One block per (query tile, head): a tile is up to mha_tc_queries_per_tile() consecutive tokens of one
// sequence at consecutive positions, {first token, count, first position, the sequence's first key row}.
struct MhaTile {
  int32_t t0, nq, pos0, krow0;
};
struct MhaArgs {
  const float* q = nullptr;  // [T, H, Dn + Dr]
  const uint16_t *k = nullptr, *v = nullptr;  // bf16, packed head-major (launch_mha_pack_bf16)
  const MhaTile* tiles = nullptr;
  int ntiles = 0, N = 0, H = 0;
  float scale = 1.f;
  float* out = nullptr;  // [T, H, Dv]
};
// Widths (Dn, Dr, Dv) the tensor-core kernel is built for: (128, 64, 128) (DeepSeek-V3/V3.2), (64, 64, 64)
// (the demo preset) and (32, 16, 32) (the tiny golden models).
bool mha_tc_supported(int Dn, int Dr, int Dv);
int mha_tc_queries_per_tile();
void launch_mha_tc(const MhaArgs& a, int Dn, int Dr, int Dv, cudaStream_t st);

// ---- lightning indexer (k_indexer.cu) ----
struct IndexerArgs {
  const float* q = nullptr;  // [T, heads, head_dim]
  const float* w = nullptr;  // [T, heads]
  const float* k_pool = nullptr;  // [rows, head_dim]; null when k_fp8 is set
  const uint8_t* k_fp8 = nullptr;  // packed FP8 keys [rows, kv.bytes] (e4m3 + one scale per key)
  KvFp8Dev kv;
  DevBatch b;
  int heads = 0, head_dim = 0, topk = 0;
  int t0 = 0, Tc = 0;       // query rows [t0, t0 + Tc) of this chunk
  int L = 0;                // score row pitch (>= longest context in the chunk, a multiple of 8)
  int tiles = 1;            // 64-key tiles per score block (more: the query is loaded fewer times)
  float* scores = nullptr;  // scratch [Tc, L]
  int32_t* out = nullptr;   // [T, Kout]
  int Kout = 0;
};
void launch_indexer_scores(const IndexerArgs& a, cudaStream_t st);
// The tensor-core form of the scores (k_indexer_tc.cu, the fast GEMM mode): the same rows of `scores`.
// Supported when indexer_tc_supported(heads, head_dim): head_dim 128, up to 64 heads. Blocks of
// indexer_tc_queries_per_block(Tc) queries x a.tiles tiles of 64 keys.
bool indexer_tc_supported(int heads, int head_dim);
// Whether the tensor-core score kernel reads packed FP8 keys of this row size (132 bytes: head_dim 128;
// else they go to the SIMT kernel).
bool indexer_tc_takes_fp8(int row_bytes);
int indexer_tc_queries_per_block(int Tc);
void launch_indexer_scores_tc(const IndexerArgs& a, cudaStream_t st);
// The FP8 wgmma form (k_indexer_wgmma.cu, sm_90a; IndexerMode::Fp8 values only: q rows and keys exactly e4m3
// times a power of two). Two pre-passes write the chunk's queries and the keys its sequences need as e4m3 +
// per-row scales into these buffers (tiles in the 128-byte swizzle); the score kernel then writes the same
// rows of `scores` as the other kernels. a.tiles: 128-key tiles per score block.
struct IndexerWgmmaBufs {
  uint8_t* q8 = nullptr;    // [tq][64 x 128] e4m3
  float* wq = nullptr;      // [tq][64]: w[t,h] x the row's scale (0 past heads or past Tc)
  uint8_t* k8 = nullptr;    // [rows][128] e4m3: for each sequence, positions 0.. from seq_keys[2 s]
  float* ksc = nullptr;     // [rows]: each key's scale (0 for rows past the page table or the need)
  const int32_t* seq_keys = nullptr;  // [2 nseq]: first row in k8 (a multiple of 128), positions needed
  const int32_t* tile_seq = nullptr;  // [rows / 128]: the sequence of each 128-row tile (-1: none)
  int rows = 0;             // a multiple of 128
  int qt = 4;               // tokens per score block: 4 or 8
  int tq = 0;               // Tc rounded up to a multiple of 8 (q8 / wq rows; padding rows are zeros)
};
bool indexer_wgmma_supported(int heads, int head_dim);
int indexer_wgmma_keys_per_tile();
void launch_indexer_scores_wgmma(const IndexerArgs& a, const IndexerWgmmaBufs& w, cudaStream_t st);
void launch_indexer_topk(const IndexerArgs& a, cudaStream_t st);
// The same top-k for chunks of few long rows: each row split over `slices` blocks (11 small launches
// instead of one latency-bound block per row). `work`: indexer_topk_split_work_bytes(Tc, slices).
void launch_indexer_topk_split(const IndexerArgs& a, int slices, void* work, cudaStream_t st);
size_t indexer_topk_split_work_bytes(int Tc, int slices);

// ---- MoE (k_moe.cu) ----
// noaux_tc routing. Two kernels with bitwise the same ids and weights: Block (one block per token, the
// choices as ranks: short dependent chains, for decode-sized batches; E <= 1024, E / n_group <= 64) and
// Warp (one warp per token, serial argmax rounds: large batches). Auto picks by T; a form a shape does not
// support falls back to Warp. Returns the form launched. top_k <= 32, n_group <= 32.
enum class MoeRouteForm { Auto, Warp, Block };
MoeRouteForm launch_moe_route(const float* logits, const float* bias, int T, int E, int n_group, int topk_group,
                              int top_k, bool norm, float scaling, int32_t* ids, float* weights, cudaStream_t st,
                              MoeRouteForm form = MoeRouteForm::Auto);

// ---- grouped MoE experts: device-side routing lists and combine (k_moe_lists.cu), the grouped GEMM
// (k_moe_gemm.cu); a fixed number of launches whatever the routing ----
// One expert's SwiGLU weights: gate, up [I, H] and down [H, I], FP8 (with block scales) or BF16.
struct MoeExpertPtrs {
  const void* w[3] = {nullptr, nullptr, nullptr};  // gate, up, down
  const float* scale[3] = {nullptr, nullptr, nullptr};  // FP8 only
};
constexpr int kMoeMaxExperts = 512;
constexpr int kMoeMaxTopK = 32;
constexpr int kMoeTileRows = 8;  // slots per work tile of the grouped GEMMs (one MMA column block)
// The routing of P = T * k pairs (t, j) sorted by expert into slots (stable: by t, then j, within an
// expert), and the work tiles: up to tile_rows consecutive slots of one expert. Ids outside [0, E)
// get no slot (pair_slot -1) and contribute nothing. With tile_slot0 set, the rows are padded: each
// expert's rows start at a multiple of tile_rows (its last tile's spare rows have token -1), tiles
// name padded rows, and slots stay compact (tile_slot0: the slot of a tile's first row).
struct MoeLists {
  int32_t* slot_token = nullptr;  // [P] (padded: [max_tiles * tile_rows]): token of row s, -1 for padding
  int32_t* pair_slot = nullptr;   // [P]: slot of pair t * k + j, or -1
  int32_t* tiles = nullptr;       // [max_tiles * 3]: expert, first row, rows
  int32_t* n_tiles = nullptr;     // [1]: tiles in use (written by the kernel)
  int tile_rows = kMoeTileRows;
  int32_t* tile_slot0 = nullptr;  // [max_tiles], padded layout only
};
// Tiles that P pairs over E experts can need (a host-known bound: the grid size of the GEMMs).
int moe_max_tiles(int pairs, int E, int tile_rows = kMoeTileRows);
// One block. E <= kMoeMaxExperts. With `shared`, T more pairs follow the P routed ones: pair P + t is
// token t's shared expert, expert E (E + 1 <= kMoeMaxExperts): pair_slot has P + T entries, and the shared
// expert's slots come last.
void launch_moe_build_lists(const int32_t* ids, int T, int k, int E, const MoeLists& l, cudaStream_t st,
                            bool shared = false);
// Expert parallelism: ids in [first, first + count) -> id - first, others -> -1 (skipped by the lists).
void launch_moe_local_ids(int32_t* ids, int64_t n, int32_t first, int32_t count, cudaStream_t st);
// Grouped weight-streaming GEMM over the tiles (fp32 activations x exact TF32 weights, two-part
// activations: fp32-accurate, like launch_gemv). gated: y[s] = silu(x_s W_gate^T) * (x_s W_up^T), with
// x_s = x[x_row_of_slot[s]]; else y[s] = x[s] W_down^T. y rows are slots ([P, N]).
struct MoeGemmArgs {
  const MoeExpertPtrs* experts = nullptr;
  // The shared expert run as expert `shared_e` (the lists' expert E), its pointers here (-1: none).
  MoeExpertPtrs shared;
  int shared_e = -1;
  WType wtype = WType::FP8;
  const int32_t* tiles = nullptr;
  const int32_t* n_tiles = nullptr;
  int max_tiles = 0;
  const float* x = nullptr;
  const int32_t* x_row_of_slot = nullptr;  // null: row = slot
  int K = 0, N = 0, scale_pitch = 0;
  float* y = nullptr;
  // FP8 weights only (the fast mode's decode): f16 MMAs on the weights' exact f16 form and x scaled per
  // 64-column step by a power of two into f16 (11 bits of x, TF32's precision).
  bool f16_x = false;
  // Rows per block of the down GEMM: 16, or 32 (two tiles sharing each activation step's conversion).
  int down_rows = 16;
  // Weights by the GEMV's streaming loads (no L1 allocation, 256-byte L2 fetches) instead of __ldg
  // (-1.6% per decode step at batch 1 and 8, docs/PERF.md).
  bool stream_weights = true;
};
void launch_moe_grouped_gemm(const MoeGemmArgs& a, bool gated, cudaStream_t st);
// The FP8 grouped GEMMs of the fast mode's large batches (k_moe_fp8.cu), over padded tiles of
// kMoeFp8TileRows rows (MoeLists with tile_slot0). FP8 e4m3 activations with one ue8m0 scale per row per
// 128 columns (as linear() quantises them), FP8 weights with 128x128 scales, fp32 accumulation.
//   gated (gate+up): rows gathered from a [T, K] by row_token (-1: a zero row); act_q / act_s = the
//     SwiGLU output quantised like an activation, [rows, N] e4m3 and scales [N / 128, act_s_pitch].
//   down: rows of a = padded rows; out [slots, N] fp32 (row = the tile's first slot + row in tile).
// Supported when K % 128 == 0, N % 128 == 0 and the expert table holds FP8 weights (moe_fp8_supported).
constexpr int kMoeFp8TileRows = 64;
struct MoeFp8GemmArgs {
  const MoeExpertPtrs* experts = nullptr;
  const int32_t* tiles = nullptr;
  const int32_t* tile_slot0 = nullptr;
  const int32_t* n_tiles = nullptr;
  int max_tiles = 0;
  const uint8_t* a = nullptr;
  const float* a_scale = nullptr;  // scale of (row r, K block b) at a_scale[b * a_scale_pitch + r]
  int a_scale_pitch = 0;
  const int32_t* row_token = nullptr;  // gated only
  int K = 0, N = 0, scale_pitch = 0;    // scale_pitch: the weights' scale row pitch
  uint8_t* act_q = nullptr;             // gated only
  float* act_s = nullptr;
  int act_s_pitch = 0;
  float* out = nullptr;  // down only
};
bool moe_fp8_supported(int K, int N);
void launch_moe_fp8_gemm(const MoeFp8GemmArgs& a, bool gated, cudaStream_t st);
// The same GEMMs over tiles of kMoeFp8WsTileRows rows (k_moe_fp8_ws.cu: warp-specialised, both operands
// shared by two consumer warpgroups): for large chunks, where experts fill whole 128-row tiles.
constexpr int kMoeFp8WsTileRows = 128;
void launch_moe_fp8_gemm_ws(const MoeFp8GemmArgs& a, bool gated, cudaStream_t st);
// y[t] = sum over t's pairs, in slot order (= expert order, as the CPU backend adds), of w[t, j] * out[slot];
// with shared_slot (the lists' pair_slot + P), then + out[shared_slot[t]] (weight 1, added last: the
// composition's add of the shared expert).
// num_sms: the grid spreads small T over about one block per SM.
void launch_moe_combine(const float* out, int H, const int32_t* pair_slot, const float* w, int T, int k, float* y,
                        int num_sms, cudaStream_t st, const int32_t* shared_slot = nullptr);

// ---- sampling (k_sample.cu) ----
// One row to sample (backend::SamplingRow on the device). temperature 0 = greedy.
struct DevSampleRow {
  long long logits_row = 0;
  unsigned long long seed = 0, position = 0;
  float temperature = 0.f, top_p = 1.f, min_p = 0.f;
  float repetition_penalty = 1.f, frequency_penalty = 0.f, presence_penalty = 0.f;
  int top_k = -1, top_logprobs = 0, logprobs = 0;
  int penalty_begin = 0, penalty_count = 0;
  int mask_begin = -1;  // first word of the row's token mask in SampleArgs::masks; -1: none
};
constexpr int kSampleMaxTopLogprobs = 64;
struct SampleArgs {
  float* logits = nullptr;  // [*, vocab]; the batch's rows get their penalties applied in place
  int vocab = 0;
  int rows = 0;             // batch rows (one block each)
  const DevSampleRow* row = nullptr;
  const int32_t* penalty_ids = nullptr;
  const int32_t* penalty_counts = nullptr;  // occurrences in the output
  const uint32_t* masks = nullptr;           // token masks (backend/sampling.h SamplingBatch::token_masks)
  int32_t* token = nullptr;    // [rows]; -1: NaN / +inf / no finite logit in the row
  float* logprob = nullptr;    // [rows]
  int32_t* top_ids = nullptr;  // [rows, top_pitch]
  float* top_logprobs = nullptr;
  int top_pitch = 0;           // >= every row's top_logprobs
};
void launch_sample(const SampleArgs& a, cudaStream_t st);
// ids[r] = argmax of logits row r (F32 [R, V]); 0 for a row with a NaN or +inf (Backend::argmax_rows).
void launch_argmax_rows(const float* logits, int R, int V, int* ids, cudaStream_t st);
// Backend::rescore_topk (k_rescore_topk.cu): rows of logits [R, V] keep their k <= 8 best entries, rescored as
// x [R, H] (F32) . w [>= V, H] (BF16 when w_bf16, else F32), and -inf elsewhere.
void launch_rescore_topk(float* logits, int R, int V, const float* x, const void* w, bool w_bf16, int H, int k,
                         cudaStream_t st);

}  // namespace ds::backend::cuda
