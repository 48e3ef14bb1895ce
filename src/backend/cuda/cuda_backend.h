// The CUDA backend (Hopper, sm_90a). Activations are fp32 (act_dtype F32), KV latent pools fp32 or BF16
// (the serving default): every op accumulates in fp32 like the CPU reference; the other reduced-precision
// step is the GEMM input of the "fast" GEMM mode (FP8 block-scaled activations for FP8 weights, BF16 for BF16 weights, via cuBLASLt),
// used for M > 8 tokens. Weights stay in the checkpoint's format on the device (FP8 e4m3 + 128x128 block
// scales, BF16), dequantised in registers by our kernels. One stream; one caching allocator.
#pragma once
#include <cuda_runtime.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/device_alloc.h"
#include "backend/cuda/kernels.h"

namespace ds::backend::cuda {

enum class GemmMode {
  Fast,   // M <= 8: fp32 weight-streaming kernel; larger M: cuBLASLt FP8 (W8A8 block-scaled) / BF16
  Exact,  // fp32 activations everywhere (our SIMT GEMM for M > 8): matches the CPU backend to rounding
};

// The fast mode's approximations, each of which can be switched off alone (DSSERVE_CUDA_FAST_PARTS) to
// measure its own error (docs/ACCURACY.md). Exact mode: none of them, whatever the mask.
enum FastPart : uint32_t {
  kFastFp8Act = 1,       // FP8 e4m3 activations (1x128, ue8m0 scales) into cuBLASLt for FP8 weights, M > 8
  kFastBf16Gemm = 2,     // BF16 activations into cuBLASLt for large BF16 weights (the LM head), M > 8
  kFastTf32Absorb = 4,   // MLA absorptions as TF32 batched GEMMs from kAbsorbBatchedMinTokens tokens
  kFastTcAttention = 8,  // tensor-core MLA attention: wgmma with bf16 queries / probabilities (BF16 latent
                         // pools), mma.sync with hi+lo ones (FP8 pools, or MlaKernel::Tc)
  kFastTcIndexer = 16,   // tensor-core indexer scores
  kFastTf32Gemv = 32,    // decode GEMV (M <= 8): x rounded to TF32, one MMA per step instead of the hi + lo
                         // split; the grouped decode MoE: x scaled per step into f16 (11 bits too), f16 MMAs
  kFastBf16Absorb = 64,  // the same absorptions in bf16 (q's nope part, kv_b, q_abs and o_lat rounded to bf16,
                         // fp32 sums), q_abs and o_lat handed to the wgmma attention in bf16: half the bytes of
                         // the prefill's largest intermediates (FlashMLA's and SGLang's form)
  kFastAll = 127,
  // What the fast mode uses unless DSSERVE_CUDA_FAST_PARTS says otherwise. kFastTf32Gemv joined it on
  // 2026-12-04: -5% at batch 1, and the decode path's KL from DeepSeek's FP8 reference unchanged to 3 digits
  // (docs/ACCURACY.md 3b). kFastBf16Absorb joined it on 2026-12-06: -5% on an 8K prefill chunk, its KL from
  // the exact path no more than the BF16 cache's alone (docs/ACCURACY.md 3d).
  kFastDefault = kFastAll,
};

// How moe_experts runs. Grouped: device-side lists + grouped GEMMs, 4 launches whatever the routing,
// no host sync (FP8 / BF16 experts). GroupedFp8 (fast mode only, FP8 experts with H, I multiples of 128):
// the same device-side lists padded to 64-row tiles, FP8 activations and wgmma GEMMs, 5 launches.
// PerExpert: the routing read back, then per used expert a gather, three linear() calls and a
// scatter-add. Auto: grouped up to moe_grouped_max_tokens() tokens, then GroupedFp8 where it applies,
// else PerExpert. GroupedFp8 asked for where it does not apply (the exact mode) acts as Auto.
enum class MoePath { Auto, Grouped, GroupedFp8, PerExpert };

// Which kernel mla_attention_absorbed runs in the fast mode (the exact mode always runs the SIMT fp32 kernel).
// Wgmma (k_mla_wgmma.cu; BF16 pools; bf16 queries and weights, ~2e-3). WgmmaPair (k_mla_wgmma_pair.cu: the
// same numerics and applicability, FlashMLA's two-block schedule). Tc (k_mla_tc.cu; BF16 and packed FP8
// pools; two-part queries and weights, ~1e-6). Auto: wgmma where mla_wgmma_wanted() says so (today wherever
// it applies), else tc; a kernel pinned where it does not apply (an FP8 or fp32 pool, other widths) falls
// back as Auto would.
enum class MlaKernel { Auto, Wgmma, WgmmaPair, Tc, Simt };

// Which kernel scores the indexer's keys in the fast mode (the exact mode always runs the SIMT fp32 kernel).
// Wgmma (k_indexer_wgmma.cu): FP8 wgmma, for IndexerMode::Fp8 values only (indexer_topk's fp8_values),
// head_dim 128, <= 64 heads, fp32 or packed FP8 pools; FP8 accumulation (~3e-5 of the terms). Tc
// (k_indexer_tc.cu): mma.sync BF16, exact products for the Fp8 mode's values, ~fp32 for others. Auto: wgmma
// where it applies and indexer_wgmma_wanted() (prefill-like chunks), else tc where it applies, else SIMT; a
// kernel pinned where it does not apply falls back as Auto would.
enum class IndexerKernel { Auto, Wgmma, Tc, Simt };

struct CudaOptions {
  int device = 0;
  GemmMode gemm = GemmMode::Fast;
  uint32_t fast_parts = kFastDefault;  // which approximations the fast mode uses
  bool poison = false;  // fill every uninitialised allocation with NaN (0x7FC07FC0 words): tests
  // Tests: the fast mode's FP8 GEMMs round activations exactly as for cuBLASLt but multiply with our
  // fp32 GEMM, separating cuBLASLt's part of the fast mode's error from the FP8 rounding's.
  bool emulate_fp8_lt = false;
  MoePath moe_path = MoePath::Auto;  // DSSERVE_MOE_PATH=auto|grouped|grouped-fp8|per-expert: A/B runs
  MlaKernel mla_kernel = MlaKernel::Auto;  // DSSERVE_MLA_KERNEL=auto|wgmma|tc|simt: A/B runs
  // The tensor-core MLA kernels split a short batch's key lists into slices of at least this many key steps
  // (tiles). 2 keeps 32 blocks busy at one token and 2,048 keys; 1 doubles them but measured no faster
  // (batch 1 2.451 vs 2.428-2.433 ms: the combine's extra partials cost what the split gains; docs/PERF.md).
  // DSSERVE_MLA_SPLIT_STEPS=1|2|4: A/B runs.
  int mla_split_steps = 2;
  // The wgmma MLA kernels' bf16 query tiles by cp.async (MlaArgs::q_async). DSSERVE_MLA_Q_ASYNC=0|1: off
  // until an A/B on a GPU (written in session 25 without one).
  bool mla_q_async = false;
  IndexerKernel indexer_kernel = IndexerKernel::Auto;  // DSSERVE_INDEXER_KERNEL=auto|wgmma|tc|simt: A/B runs
  // The attention block's fused per-token kernels (mla_kv_write, indexer_key_write, mla_absorb_q_rope;
  // k_kv_fused.cu); off: the Backend defaults, i.e. the separate kernels. DSSERVE_FUSED_KV=0|1: A/B runs.
  bool fused_kv = true;
  // linear_group in one GEMV launch where the shapes allow (k_gemv.cu GemvGroup); off: one linear() per
  // weight. DSSERVE_GEMV_GROUP=0|1: A/B runs.
  bool gemv_group = true;
  // The fast mode's decode MoE (grouped path, FP8 experts) on f16 MMAs with x scaled per step (MoeGemmArgs::
  // f16_x; with the fast part tf32_gemv); off: the exact TF32-split kernel. DSSERVE_MOE_F16_X=0|1: A/B runs.
  bool moe_f16_x = true;
  // moe_ffn runs the shared expert inside the grouped launches where it can (DSSERVE_MOE_FUSE_SHARED=0|1).
  bool moe_fuse_shared = true;
  // Rows per block of the grouped decode MoE's down GEMM (MoeGemmArgs::down_rows): 16 or 32.
  // DSSERVE_MOE_DOWN_ROWS=16|32: A/B runs.
  int moe_down_rows = 32;
  // The grouped decode MoE's weights by streaming loads (MoeGemmArgs::stream_weights: batch 1 2.390 vs
  // 2.428 ms, batch 8 5.762 vs 5.864, docs/PERF.md). DSSERVE_MOE_STREAM=0|1 for A/B runs.
  bool moe_stream_weights = true;
  // Rows per tile of the grouped FP8 experts (k_moe_fp8.cu 64, k_moe_fp8_ws.cu 128); 0: by the chunk's
  // routed rows per expert (moe_fp8_tile_rows_for). DSSERVE_MOE_FP8_TILE=auto|64|128: A/B runs.
  int moe_fp8_tile_rows = 0;
  // Backend::branch on a second stream (cuda_branch.cpp): the attention block's cache writes and indexer
  // weights beside its query projections (model/layer.cpp), in steps of at most branch_max_tokens tokens.
  // Off: branches run in order on the one stream. DSSERVE_OVERLAP=0|1 for A/B runs (on: session 20 measured
  // -1.1% at batch 1 and -2.3% at batch 8, and +1.3% on an 8K prefill chunk, hence the token limit).
  bool overlap = true;
  // Branches of wider steps run in order (decode steps up to the recorded batches overlap; prefill chunks not).
  int64_t branch_max_tokens = 256;
};

// A MoE layer's expert weights as the grouped kernels see them: built when the layer is loaded
// (prepare_experts), kept with the weights.
struct MoeExpertTable {
  int64_t E = 0;                  // experts
  Tensor dev;                     // MoeExpertPtrs [E] on the device
  bool grouped = false;           // the grouped kernels support these weights
  WType wtype = WType::FP8;
  int64_t H = 0, I = 0;
  int pitch_gate_up = 0, pitch_down = 0;  // FP8 scale row pitches
};

// Defaults, overridden by DSSERVE_CUDA_GEMM=fast|exact, DSSERVE_CUDA_FAST_PARTS (comma list of fp8_act,
// bf16_gemm, tf32_absorb, tc_attention, tc_indexer, tf32_gemv, bf16_absorb, or default / all / none),
// DSSERVE_CUDA_POISON=1,
// DSSERVE_MOE_PATH, DSSERVE_MLA_KERNEL, DSSERVE_INDEXER_KERNEL, DSSERVE_FUSED_KV, DSSERVE_GEMV_GROUP,
// DSSERVE_MOE_F16_X and DSSERVE_MOE_FUSE_SHARED.
CudaOptions options_from_env(int device);
uint32_t parse_fast_parts(std::string_view list);
// The kernels' view of a packed FP8 row layout (checks the widths the kernels take).
KvFp8Dev kv_fp8_dev(const KvFp8Layout& L);

class LtGemm;
class BatchedGemm;

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const CudaOptions& o);
  ~CudaBackend() override;
  std::string name() const override { return "cuda"; }
  Device device() const override { return Device::CUDA; }
  int device_index() const override { return opts_.device; }
  void make_current() override;
  DType act_dtype() const override { return DType::F32; }
  int64_t free_device_memory() const override;
  bool supports_kv_dtype(DType t) const override {
    return t == DType::F32 || t == DType::BF16 || t == DType::F8_E4M3;
  }

  LinearWeight load_linear(const HostTensor& w, const HostTensor* scale_inv) override;
  Tensor load_tensor_f32(const HostTensor& t) override;

  Tensor alloc(std::vector<int64_t> shape, DType dtype) override;
  Tensor to_host_f32(const Tensor& t) override;
  Tensor from_host(const Tensor& t) override;
  HostBytes alloc_host_bytes(size_t bytes) override;
  void gather_rows_to_host(void* dst, const Tensor& pool, const std::vector<int32_t>& rows) override;
  void scatter_rows_from_host(Tensor& pool, const std::vector<int32_t>& rows, const void* src) override;

  Tensor embedding(const Tensor& table, const std::vector<int32_t>& ids) override;
  Tensor embedding_part(const Tensor& table, const std::vector<int32_t>& ids, int64_t first) override;
  Tensor embedding_ids(const Tensor& table, const Tensor& ids, int64_t first) override;
  void argmax_rows(const Tensor& logits, Tensor& ids) override;
  void rescore_topk(Tensor& logits, const Tensor& x, const LinearWeight& w, int k) override;
  Tensor linear(const Tensor& x, const LinearWeight& w) override;
  std::vector<Tensor> linear_group(const Tensor& x, const std::vector<const LinearWeight*>& ws) override;
  Tensor rmsnorm(const Tensor& x, const Tensor& w, float eps) override;
  Tensor add_rmsnorm(const Tensor& x, Tensor& residual, const Tensor& w, float eps) override;
  Tensor layernorm(const Tensor& x, const Tensor& w, const Tensor& b, float eps) override;
  void add_inplace(Tensor& y, const Tensor& x) override;
  void scale_inplace(Tensor& y, float s) override;
  void rope(Tensor& x, int64_t col0, int64_t head_stride, int64_t nheads, int64_t rot_dim,
            const std::vector<int32_t>& pos, const RopeTable& table, RopeLayout layout) override;
  Tensor silu_mul(const Tensor& gate, const Tensor& up) override;
  void copy_cols(Tensor& dst, int64_t dst_col0, const Tensor& src, int64_t src_col0, int64_t ncols) override;

  void cache_write(Tensor& pool, int64_t col0, const Tensor& rows, const std::vector<int32_t>& slots) override;
  Tensor cache_gather(const Tensor& pool, const std::vector<int32_t>& slots) override;
  void cache_write_fp8(Tensor& pool, const KvFp8Layout& layout, const Tensor& quant, const Tensor* rest,
                       const std::vector<int32_t>& slots) override;
  Tensor cache_gather_fp8(const Tensor& pool, const KvFp8Layout& layout, const std::vector<int32_t>& slots) override;

  Tensor mla_absorb_q(const Tensor& q, const LinearWeight& kv_b, int64_t heads, int64_t nope_dim,
                      int64_t v_dim) override;
  Tensor mla_absorb_out(const Tensor& o_lat, const LinearWeight& kv_b, int64_t heads, int64_t nope_dim,
                        int64_t v_dim) override;
  Tensor mla_attention_absorbed(const Tensor& q_abs, const Tensor& kv_pool, const Tensor& index,
                                const AttnBatch& batch, int64_t latent_dim, float scale) override;
  Tensor attention_expanded(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& index,
                            const AttnBatch& batch, const std::vector<int32_t>& key_row0, float scale) override;
  Tensor attention_mha_causal(const Tensor& q, const Tensor& kvb, const Tensor& rope, int64_t rope_col0, int64_t v_dim,
                              const AttnBatch& batch, const std::vector<int32_t>& key_row0, float scale) override;

  Tensor indexer_topk(const Tensor& q, const Tensor& w, const Tensor& k_pool, const AttnBatch& batch,
                      int64_t heads, int64_t head_dim, int64_t topk, bool fp8_values = false) override;
  Tensor causal_index(const AttnBatch& batch) override;
  void hadamard_fp8_round(Tensor& x, int64_t row_len) override;

  // One kernel each (k_kv_fused.cu) where options().fused_kv and the shapes allow, else the Backend defaults.
  void mla_kv_write(const Tensor& kv, int64_t latent_dim, const Tensor& norm_w, float eps,
                    const std::vector<int32_t>& pos, const RopeTable& rope, Tensor& pool, const KvFp8Layout* fp8,
                    const std::vector<int32_t>& slots) override;
  void indexer_key_write(const Tensor& k, const Tensor& ln_w, const Tensor& ln_b, float eps, int64_t rot_dim,
                         const std::vector<int32_t>& pos, const RopeTable& rope, bool hadamard_fp8, Tensor& pool,
                         const KvFp8Layout* fp8, const std::vector<int32_t>& slots) override;
  Tensor mla_absorb_q_rope(const Tensor& q, const LinearWeight& kv_b, int64_t heads, int64_t nope_dim, int64_t v_dim,
                           const std::vector<int32_t>& pos, const RopeTable& rope) override;

  void moe_route(const Tensor& router_logits, const Tensor& bias, const MoeRouting& cfg, Tensor* ids,
                 Tensor* weights) override;
  std::shared_ptr<const ExpertSet> prepare_experts(std::vector<ExpertWeights> experts) override;
  Tensor moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights, const ExpertSet& set) override;
  // Where the grouped path runs the routed experts and the shared expert has their shapes and format: the
  // shared expert as one more expert of the same launches (no GEMV, SwiGLU and add launches of its own).
  Tensor moe_ffn(const Tensor& x, const Tensor& ids, const Tensor& weights, const ExpertSet& set,
                 const ExpertWeights* shared) override;
  void moe_local_ids(Tensor& ids, int32_t first, int32_t count) override;

  void bind_step(const StepIndex* s) override;
  bool can_capture() const override { return !profile_; }
  std::unique_ptr<CapturedStep> capture(const StepIndex& example, int32_t pages_per_seq,
                                        const std::function<Tensor()>& body) override;
  Tensor replay(CapturedStep& step, const StepIndex& idx) override;

  void branch(const std::function<void()>& ops, int64_t tokens) override;
  void join_branch() override;

  bool can_sample() const override { return true; }
  int32_t max_sample_top_logprobs() const override { return kSampleMaxTopLogprobs; }
  std::vector<SampledRow> sample(Tensor& logits, const SamplingBatch& batch) override;

  // ---- beyond the Backend interface: tests and benchmarks ----
  cudaStream_t stream() const { return stream_; }
  int num_sms() const { return num_sms_; }
  const CudaOptions& options() const { return opts_; }
  void set_gemm_mode(GemmMode m) { opts_.gemm = m; }
  void set_fast_parts(uint32_t mask) { opts_.fast_parts = mask; }  // tests: one approximation on or off
  // Whether the fast mode's approximation `p` is on (fast mode and its bit in fast_parts).
  bool fast(FastPart p) const { return opts_.gemm == GemmMode::Fast && (opts_.fast_parts & p); }
  void set_emulate_fp8_lt(bool on) { opts_.emulate_fp8_lt = on; }
  // Benchmarks: time the kernels inside some ops (synchronising after each) and log the times.
  void set_profile(bool on) { profile_ = on; }
  void synchronize();
  // Uninitialised device tensor (NaN-poisoned when options().poison).
  Tensor empty(std::vector<int64_t> shape, DType dtype);
  // A CPU copy with the same dtype and shape.
  Tensor to_host(const Tensor& t);
  DeviceAllocator::Stats memory_stats() const { return alloc_->stats(); }
  // Memory of captured steps (a pool of its own, shared by every captured step: they never run at once).
  DeviceAllocator::Stats graph_memory_stats() const;
  // How linear() ran its last call: "gemv" ("gemv-tf32": the fast mode's TF32-rounded x), "simt", "lt-fp8",
  // "lt-bf16"; linear_group: "gemv-group" / "gemv-group-tf32" when it took one launch.
  const char* last_gemm_path() const { return last_gemm_path_; }
  // How the last MLA absorption beyond 8 tokens ran: "tf32-batched" / "bf16-batched" (fast mode,
  // >= kAbsorbBatchedMinTokens) or "simt".
  const char* last_absorb_path() const { return last_absorb_path_; }
  static constexpr int kAbsorbBatchedMinTokens = 64;
  // How the indexer's scores ran last: "wgmma" (FP8, fast mode), "tc" (tensor cores, fast mode) or "simt".
  const char* last_indexer_path() const { return last_indexer_path_; }
  // With set_profile(true): the last indexer_topk call's score and top-k kernels, microseconds of device
  // time summed over its chunks.
  std::pair<float, float> last_indexer_profile_us() const { return {last_indexer_us_[0], last_indexer_us_[1]}; }
  // Tests: the score rows alone, [T, L] (L = longest context rounded up to 8), through the same dispatch
  // as indexer_topk; only s(t, j <= p) of rows with p + 1 > topk are written.
  Tensor indexer_scores(const Tensor& q, const Tensor& w, const Tensor& k_pool, const AttnBatch& batch,
                        int64_t heads, int64_t head_dim, int64_t topk, bool fp8_values = false);
  // How attention_mha_causal ran its last call: "tc" (tensor cores) or "simt" (fp32: the exact mode).
  const char* last_mha_path() const { return last_mha_path_; }
  // How mla_attention_absorbed ran its last call: "wgmma", "tc" (tensor cores) or "simt".
  const char* last_mla_path() const { return last_mla_path_; }
  void set_mla_kernel(MlaKernel k) { opts_.mla_kernel = k; }
  void set_mla_split_steps(int n) { opts_.mla_split_steps = n; }  // tests: both split sizes
  void set_mla_q_async(bool on) { opts_.mla_q_async = on; }       // tests: both query loads
  void set_indexer_kernel(IndexerKernel k) { opts_.indexer_kernel = k; }
  // Whether Auto takes the wgmma score kernel for a chunk of Tc queries of `seqs` distinct sequences (where
  // it applies): prefill-like chunks, whose queries share their sequence's keys. Decode batches stay on the
  // tc kernel, which reads each key once per query with no pre-pass.
  static bool indexer_wgmma_wanted(int64_t Tc, int64_t seqs) { return Tc >= 128 && Tc >= 16 * seqs; }
  // Tests and A/B runs: the fused attention-block kernels on or off (DSSERVE_FUSED_KV).
  void set_fused_kv(bool on) { opts_.fused_kv = on; }
  // Which way the last mla_kv_write / indexer_key_write / mla_absorb_q_rope call ran: "fused" or "composed".
  const char* last_kv_write_path() const { return last_kv_write_path_; }
  // Auto's choice between the wgmma and the tc kernel for a launch of T queries x H heads x K keys (BF16 pool,
  // supported widths): from the shape only, so that captured steps stay valid (docs/PERF.md, "Sparse MLA on
  // wgmma").
  bool mla_wgmma_wanted(int64_t T, int64_t H, int64_t K) const;
  // With set_profile(true): the last mla_attention_absorbed call's attention kernel and split merge, in
  // microseconds of device time (its last chunk of queries).
  std::pair<float, float> last_mla_profile_us() const { return {last_mla_us_[0], last_mla_us_[1]}; }
  // The cuBLASLt FP8 configuration found by the first fast FP8 GEMM ("" before, "off" if none worked).
  const std::string& fp8_lt_config() const { return fp8_lt_config_; }
  // The FP8 path alone (activation quantisation + cuBLASLt): F32 [M, N], undefined if unavailable.
  Tensor linear_fp8_lt(const Tensor& x, const LinearWeight& w);
  // The small-M and SIMT paths alone, y F32 [M, N].
  void linear_gemv(const Tensor& x, const LinearWeight& w, Tensor& y);
  void linear_simt(const Tensor& x, const LinearWeight& w, Tensor& y);
  static WeightRef weight_ref(const LinearWeight& w);
  void set_moe_path(MoePath p) { moe_path_ = p; }
  void set_moe_down_rows(int rows) { opts_.moe_down_rows = rows; }  // tests: both down GEMM shapes
  void set_moe_stream_weights(bool on) { opts_.moe_stream_weights = on; }  // tests: both weight loads
  void set_moe_fp8_tile_rows(int rows) { opts_.moe_fp8_tile_rows = rows; }  // tests: both FP8 forms (0: auto)
  // The tile rows of the last grouped FP8 call (64 or 128).
  int last_moe_fp8_tile_rows() const { return last_moe_fp8_tile_rows_; }
  // The FP8 form Auto takes for P routed pairs over E experts: 128-row tiles once experts average enough rows.
  int moe_fp8_tile_rows_for(int64_t pairs, int64_t E) const;
  void set_overlap(bool on);  // tests: branches on a second stream or in order
  void set_branch_max_tokens(int64_t n) { opts_.branch_max_tokens = n; }  // tests: wide steps branched too
  // How the last branch ran: "stream" (on the second stream) or "inline".
  const char* last_branch_path() const { return last_branch_path_; }
  void set_moe_f16_x(bool on) { opts_.moe_f16_x = on; }  // tests: both decode MoE forms of the fast mode
  // How moe_experts ran its last call: "grouped" ("grouped-f16": the fast mode's f16 x), "grouped-fp8" or
  // "per-expert"; moe_ffn with the shared expert fused: the grouped name + " + shared".
  const char* last_moe_path() const { return last_moe_path_; }
  // Auto picks the grouped path up to this many tokens (docs/PERF.md, "MoE experts").
  int64_t moe_grouped_max_tokens() const;

 private:
  // Host vector -> device copy, through a pinned staging ring; identical contents are uploaded once
  // (recently used uploads are kept: positions, slots and page tables recur in every layer).
  const int32_t* upload_i32(const std::vector<int32_t>& v);
  const float* upload_f32(const std::vector<float>& v);
  const void* upload_bytes(const void* data, size_t bytes);
  // Host -> device through the pinned ring (asynchronous; the ring waits before it is overwritten).
  void stage_copy(void* dst, const void* src, size_t bytes);
  // The device copy of a vector of the bound step (null if `data` is not one of them).
  const void* bound_copy(const void* data, size_t bytes) const;
  DevBatch dev_batch(const AttnBatch& b);
  // The indexer's score kernel of one chunk (cuda_attention.cpp): queries [c.t0, c.t0 + c.Tc) of batch.
  void launch_scores(IndexerArgs& c, int64_t L, const AttnBatch& batch, bool fp8_values);
  bool launch_scores_wgmma(IndexerArgs& c, int64_t L, const AttnBatch& batch, bool pinned);
  void check_launch(const char* what);
  void copy_to_device(void* dst, const void* src, size_t bytes);
  void probe_fp8_lt();
  // The MLA absorptions' batched product (cuda_linear.cpp): head GEMV, cuBLAS TF32 or SIMT.
  void absorb(const GemmArgs& g, const LinearWeight& kv_b);
  // mla_absorb_q without its rope part (columns Dl.. of each head left unwritten): out [T, heads, Dl + Dr].
  Tensor absorb_q_nope(const Tensor& q, const LinearWeight& kv_b, int64_t heads, int64_t nope_dim, int64_t v_dim);
  // kFastBf16Absorb: whether an absorption of T tokens runs in bf16; kv_b dequantised to bf16 (per call: one
  // pass over the FP8 weight, 33 MB at full width); mla_absorb_q_rope's bf16 form (q_abs in bf16).
  bool bf16_absorb(int64_t T) const;
  Tensor kv_b_bf16(const LinearWeight& kv_b);
  Tensor absorb_q_rope_bf16(const Tensor& q, const LinearWeight& kv_b, int64_t heads, int64_t nope_dim, int64_t v_dim,
                            const std::vector<int32_t>& pos, const RopeTable& rope);
  MoeExpertTable moe_table(const std::vector<ExpertWeights>& experts);
  // The path moe_experts takes for T tokens of x (cuda_moe.cpp).
  MoePath moe_path_for(const Tensor& x, int64_t k, const MoeExpertTable& tb) const;
  // y [T, H] (device) = the routed experts of x (+ the shared expert's SwiGLU, an expert of tb's format and
  // shapes, when `shared` is set); T up to one chunk (cuda_moe.cpp).
  void moe_experts_grouped(const Tensor& x, const Tensor& ids, const Tensor& weights, const MoeExpertTable& tb,
                           float* y, const MoeExpertPtrs* shared = nullptr);
  Tensor moe_experts_per_expert(const Tensor& x, const Tensor& ids, const Tensor& weights,
                                const std::vector<ExpertWeights>& experts);
  // The FP8 grouped path (cuda_moe_fp8.cpp): whether it takes these experts, and one chunk of tokens.
  static bool moe_fp8_usable(const MoeExpertTable& tb);
  void moe_experts_fp8(const Tensor& x, const Tensor& ids, const Tensor& weights, const MoeExpertTable& tb, float* y);
  bool lt_fp8_usable(const WeightRef& w) const;
  Tensor run_fp8_lt(const Tensor& x, const WeightRef& r, bool m_fastest, bool out_f32, Tensor* dq);

  // The branch lane (cuda_branch.cpp): what an op needs of its own to run beside the main line's ops. While a
  // branch's ops are issued it is swapped with the members of the same names (stream_, gemv_counters_, lt_,
  // batched_), so every op issues to, and scratches in, the lane it runs on.
  struct Lane {
    cudaStream_t stream = nullptr;
    Tensor gemv_counters;
    std::unique_ptr<LtGemm> lt;
    std::unique_ptr<BatchedGemm> batched;
  };
  void make_side_lane();
  void swap_lane();

  CudaOptions opts_;
  cudaStream_t stream_ = nullptr;
  int num_sms_ = 0;
  std::shared_ptr<DeviceAllocator> alloc_;
  std::unique_ptr<LtGemm> lt_;
  std::unique_ptr<BatchedGemm> batched_;  // made at the first batched absorption
  Tensor gemv_counters_;  // kGemvMaxCounters ints, zero between launches
  // staging ring
  char* pinned_ = nullptr;
  template <typename Chunk>
  void for_each_xfer_chunk(const Tensor& pool, const std::vector<int32_t>& rows, const char* op, bool direct,
                           Chunk chunk);
  char* xfer_pinned_ = nullptr;  // staging of gather_rows_to_host / scatter_rows_from_host (kXferChunk bytes)
  size_t pinned_size_ = size_t(16) << 20, pinned_pos_ = 0;
  cudaEvent_t ring_event_ = nullptr;
  struct Upload {
    uint64_t hash = 0;
    std::vector<char> host;
    Tensor dev;
    uint64_t last_use = 0;
    int lane = -1;  // made while a branch was open: usable by that lane only until the join (else -1)
  };
  std::vector<Upload> uploads_;
  // The bound step's index data on the device (cuda_step_capture.cpp).
  struct BoundStep {
    StepIndex idx;
    DevBatch batch;
    const int32_t *ids = nullptr, *slots = nullptr, *rows = nullptr;
  };
  std::optional<BoundStep> bound_;
  Tensor bound_buf_;  // an eager step's copy (a captured step keeps its own)
  void bind_buffer(const StepIndex& s, const int32_t* dev);
  bool capturing_ = false;  // recording a step: every upload must come from the bound step
  std::shared_ptr<DeviceAllocator> graph_alloc_;
  Lane side_;
  cudaEvent_t fork_event_ = nullptr, join_event_ = nullptr;
  int lane_ = 0;               // the lane ops issue to now: 0 the main line, 1 the branch
  bool branch_open_ = false;   // a branch issued and not yet joined
  std::shared_ptr<DeviceAllocator> branch_alloc_;  // holds the frees of the open branch's window
  const char* last_branch_path_ = "";
  uint64_t upload_clock_ = 0;
  const char* last_gemm_path_ = "";
  const char* last_absorb_path_ = "";
  const char* last_mla_path_ = "";
  const char* last_mha_path_ = "";
  const char* last_kv_write_path_ = "";
  float last_mla_us_[2] = {0.f, 0.f};
  const char* last_indexer_path_ = "";
  float last_indexer_us_[2] = {0.f, 0.f};
  bool profile_ = false;
  std::string fp8_lt_config_;
  MoePath moe_path_ = MoePath::Auto;
  const char* last_moe_path_ = "";
  int last_moe_fp8_tile_rows_ = 0;
  bool fp8_lt_ok_ = false, fp8_lt_probed_ = false, fp8_lt_m_fastest_ = true, fp8_lt_out_f32_ = true, fp8_lt_any_kb_ = false;
};

std::unique_ptr<CudaBackend> make_cuda_backend(const CudaOptions& o);

}  // namespace ds::backend::cuda
