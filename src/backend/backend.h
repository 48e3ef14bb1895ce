// The backend interface: the coarse ops the DeepSeek-V3.2 forward is written against (model/ calls only
// these). A backend owns the memory format of weights and activations; the CPU backend computes in
// fp32 with weights dequantised at load, the CUDA backend keeps FP8 weights and bf16 activations.
#pragma once
#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/kv_fp8.h"
#include "backend/sampling.h"
#include "tensor/tensor.h"
#include "util/error.h"
#include "util/host_bytes.h"

namespace ds::backend {

// A checkpoint tensor as it lies in host memory (usually an mmap'd safetensors file).
struct HostTensor {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
};

// A backend that keeps FP8 weights keeps their 128x128-block scales as fp32 [row blocks, pitch], each row of
// K blocks padded to a multiple of 4 floats (16 bytes, as cuBLASLt wants; the CUDA backend's load_linear).
// Memory plans count the same bytes (model/weight_bytes.cpp).
inline int64_t fp8_scale_pitch(int64_t k_blocks) { return (k_blocks + 3) / 4 * 4; }

// The weight of a bias-free linear layer y = x W^T, W [out, in], in the backend's format.
struct LinearWeight {
  int64_t out_features = 0, in_features = 0;
  Tensor w;      // CPU: F32 [out, in]
  Tensor scale;  // FP8 per-128x128-block scales where the backend keeps FP8 (CUDA)
  bool defined() const { return w.defined(); }
};

struct ExpertWeights {
  LinearWeight gate, up, down;
};

// The routed experts of one MoE layer, prepared once at load for the backend's kernels
// (Backend::prepare_experts; the CUDA backend keeps a device table of every expert's weight and scale
// pointers). The MoE op takes this handle, not a list of weights: with expert parallelism a rank's set
// holds its own experts, and the exchanges that bring tokens to them (dispatch) and back (combine) go
// around moe_experts, which stays the local expert compute (issue 14).
class ExpertSet {
 public:
  explicit ExpertSet(std::vector<ExpertWeights> experts) : experts_(std::move(experts)) {}
  virtual ~ExpertSet() = default;
  const std::vector<ExpertWeights>& experts() const { return experts_; }
  size_t size() const { return experts_.size(); }

 private:
  std::vector<ExpertWeights> experts_;
};

enum class RopeLayout {
  Interleaved,  // pairs (x0,x1),(x2,x3),... : MLA q_rope / k_rope
  HalfSplit,    // pairs (x_i, x_{i+d/2}) : the lightning indexer
};

// Per-frequency inverse wavelengths (YaRN already folded in) and the cos/sin scale.
struct RopeTable {
  std::vector<float> inv_freq;  // rot_dim / 2 entries
  float attention_factor = 1.0f;
};

// Where each query token of a step lives: its sequence, its position, and every sequence's pages.
// Keys of sequence s at position p live in pool row page_table[s][p / page_size] * page_size + p % page_size.
struct AttnBatch {
  std::vector<int32_t> seq_of_token;            // [T]
  std::vector<int32_t> pos_of_token;            // [T] absolute positions
  std::vector<std::vector<int32_t>> page_tables;  // per sequence
  int32_t page_size = 1;
  // > 0: widths that depend on the longest context (the indexer's output, score rows, a causal index)
  // are sized for contexts up to this instead of from the positions: a captured step's shapes must not
  // change with its data. Every position must be below it.
  int32_t max_context = 0;
  int32_t slot(int32_t seq, int32_t pos) const {
    return page_tables[seq][pos / page_size] * page_size + pos % page_size;
  }
};

// The index data of one forward step: what changes from step to step besides the activations. A backend
// with device memory uploads it once per step (Backend::bind_step) and serves the ops that are handed these
// very vectors (compared by address) from that copy.
struct StepIndex {
  const std::vector<int32_t>* ids = nullptr;         // [T] token ids
  const std::vector<int32_t>* slots = nullptr;       // [T] pool rows the step writes (-1: write nothing)
  const std::vector<int32_t>* logit_rows = nullptr;  // [R] rows of the final hidden state that get logits
  const AttnBatch* batch = nullptr;                  // positions, sequences, page tables
};

// A step recorded once (a CUDA graph) and replayed with new index data of the same shape.
class CapturedStep {
 public:
  virtual ~CapturedStep() = default;
};

// The width of a step's context-sized outputs: its max_context when set (checked to cover every
// position), else the longest context among its tokens.
inline int64_t context_width(const AttnBatch& b) {
  int64_t n = 0;
  for (int32_t p : b.pos_of_token) n = std::max<int64_t>(n, int64_t(p) + 1);
  if (b.max_context <= 0) return n;
  DS_CHECK(n <= b.max_context, "position {} beyond the step's max_context {}", n - 1, b.max_context);
  return b.max_context;
}

struct MoeRouting {
  int n_group = 1, topk_group = 1, top_k = 1;
  bool norm_topk_prob = true;
  float routed_scaling_factor = 1.0f;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual Device device() const = 0;
  // Which device of its kind (the GPU's index; -1 for host memory).
  virtual int device_index() const { return -1; }
  // Makes this backend's device the calling thread's current one. CUDA keeps the current device per
  // thread, so whoever issues a step's ops (a runner, on the engine's or a rank's thread) calls it first.
  virtual void make_current() {}
  virtual DType act_dtype() const = 0;  // dtype of activations between ops
  // Device memory still free for KV pools and workspace (after the weights), in bytes; 0 for
  // backends on host memory (the server then budgets from the host's available memory).
  virtual int64_t free_device_memory() const { return 0; }
  // Element types a KV pool may have (cache_write / cache_gather / mla_attention_absorbed read and
  // write them; rows outside the pool stay act_dtype()). Every backend supports act_dtype().
  // F8_E4M3 stands for the packed FP8 pools of backend/kv_fp8.h (U8 tensors; cache_write_fp8).
  virtual bool supports_kv_dtype(DType t) const { return t == act_dtype(); }

  // ---- weights (converted from the checkpoint's dtype; FP8 comes with its block scales) ----
  virtual LinearWeight load_linear(const HostTensor& w, const HostTensor* scale_inv) = 0;
  virtual Tensor load_tensor_f32(const HostTensor& t) = 0;  // norms, biases, embedding, router

  // ---- memory ----
  virtual Tensor alloc(std::vector<int64_t> shape, DType dtype) = 0;  // zero-filled
  virtual Tensor to_host_f32(const Tensor& t) = 0;                    // F32 CPU copy (or the tensor itself)
  virtual Tensor from_host(const Tensor& t) = 0;                      // device copy of a CPU tensor
  // Host memory for buffers reused across transfers to and from the device (prefill/decode disaggregation's
  // packed KV): page-locked on device backends, so that their copies need no staging; plain memory on host
  // backends. Not zero-filled. Dropping the result frees it (on any thread, also after this backend is gone).
  virtual HostBytes alloc_host_bytes(size_t bytes);
  // Rows `rows` of a pool (its row_size() elements of its dtype each), in that order, as raw bytes to /
  // from host memory (rows.size() x row bytes), done when the call returns. Device backends gather or
  // scatter on the device and move the bytes in large transfers (straight to / from memory that
  // alloc_host_bytes gave): a prompt's KV rows (prefill/decode disaggregation) lie in pages spread over the pool.
  virtual void gather_rows_to_host(void* dst, const Tensor& pool, const std::vector<int32_t>& rows);
  virtual void scatter_rows_from_host(Tensor& pool, const std::vector<int32_t>& rows, const void* src);

  // ---- dense ops ----
  virtual Tensor embedding(const Tensor& table, const std::vector<int32_t>& ids) = 0;  // [T, H]
  // Tensor parallelism: `table` holds vocabulary rows [first, first + table rows); ids outside get zero
  // rows (the ranks' lookups are summed). ids come from the step like embedding()'s.
  virtual Tensor embedding_part(const Tensor& table, const std::vector<int32_t>& ids, int64_t first) = 0;
  // embedding_part with the ids in an I32 tensor on this backend's device (written by an earlier op of
  // the step, e.g. argmax_rows: a recorded draft chain feeds its own tokens back without the host).
  virtual Tensor embedding_ids(const Tensor& table, const Tensor& ids, int64_t first) = 0;
  // ids[r] = the column of row r's largest logit (the lowest among equal maxima), for the rows of
  // logits [R, V] (F32); a row holding a NaN or +inf gets 0. ids: I32 with >= R elements, written in place.
  virtual void argmax_rows(const Tensor& logits, Tensor& ids) = 0;
  // The draft head's refinement (model/draft_head.h): in each row r of logits [R, V] (F32: an approximate
  // head's output, an FP8 copy's), keeps its k largest entries (the lowest ids among equal values; never a
  // NaN), each replaced by x[r] . w[id] summed in fp32 over row id of `w` as this backend holds it, and sets
  // every other entry to -inf. x: F32 [R, w.in_features]; 1 <= k <= kMaxRescoreCandidates.
  static constexpr int kMaxRescoreCandidates = 8;
  virtual void rescore_topk(Tensor& logits, const Tensor& x, const LinearWeight& w, int k);
  virtual Tensor linear(const Tensor& x, const LinearWeight& w) = 0;                   // [T, out]
  // linear(x, *ws[i]) for each weight, weights that read the same x (a layer's q_a, kv_a and indexer key; an
  // MLP's gate and up): a backend may compute them in one launch (CUDA: the decode GEMV, where each small
  // projection alone costs mostly latency). The default calls linear once per weight.
  virtual std::vector<Tensor> linear_group(const Tensor& x, const std::vector<const LinearWeight*>& ws) {
    std::vector<Tensor> ys;
    for (const LinearWeight* w : ws) ys.push_back(linear(x, *w));
    return ys;
  }
  virtual Tensor rmsnorm(const Tensor& x, const Tensor& w, float eps) = 0;
  // residual += x in place, then returns rmsnorm(residual). (The fused pre-norm of every block.)
  virtual Tensor add_rmsnorm(const Tensor& x, Tensor& residual, const Tensor& w, float eps) = 0;
  virtual Tensor layernorm(const Tensor& x, const Tensor& w, const Tensor& b, float eps) = 0;
  virtual void add_inplace(Tensor& y, const Tensor& x) = 0;
  virtual void scale_inplace(Tensor& y, float s) = 0;
  // Rotates, in place, `nheads` heads of x [T, *] whose rotary part starts at column
  // col0 + h * head_stride and is rot_dim wide, at the token positions `pos`.
  virtual void rope(Tensor& x, int64_t col0, int64_t head_stride, int64_t nheads, int64_t rot_dim,
                    const std::vector<int32_t>& pos, const RopeTable& table, RopeLayout layout) = 0;
  virtual Tensor silu_mul(const Tensor& gate, const Tensor& up) = 0;
  // Column block copy: dst[:, dst_col0 : dst_col0+ncols] = src[:, src_col0 : src_col0+ncols].
  virtual void copy_cols(Tensor& dst, int64_t dst_col0, const Tensor& src, int64_t src_col0, int64_t ncols) = 0;

  // ---- KV pools ----
  // pool[slots[t], col0 : col0+ncols] = rows[t, :]
  virtual void cache_write(Tensor& pool, int64_t col0, const Tensor& rows, const std::vector<int32_t>& slots) = 0;
  virtual Tensor cache_gather(const Tensor& pool, const std::vector<int32_t>& slots) = 0;  // [n, D]
  // Packed FP8 pools (U8 [rows, layout.bytes()], backend/kv_fp8.h): quantises quant [T, quant_dim] and
  // stores rest [T, bf16_dim] (null when bf16_dim is 0) as bf16 into rows slots[t] (-1: nothing). One fused
  // op per layer and pool. mla_attention_absorbed and indexer_topk read such pools directly (a U8 pool:
  // the latent layout of (latent_dim, width - latent_dim), the indexer layout of head_dim).
  virtual void cache_write_fp8(Tensor& pool, const KvFp8Layout& layout, const Tensor& quant, const Tensor* rest,
                               const std::vector<int32_t>& slots) {
    fail("the {} backend has no FP8 KV cache", name());
  }
  // The dequantised rows [n, layout.width()] of a packed pool (the expanded attention form's check path).
  virtual Tensor cache_gather_fp8(const Tensor& pool, const KvFp8Layout& layout, const std::vector<int32_t>& slots) {
    fail("the {} backend has no FP8 KV cache", name());
  }

  // ---- MLA ----
  // q [T, H, Dn + Dr] -> [T, H, Dl + Dr]: q_lat = W_UK[h]^T q_nope, rope part copied. kv_b [H*(Dn+Dv), Dl].
  virtual Tensor mla_absorb_q(const Tensor& q, const LinearWeight& kv_b, int64_t heads, int64_t nope_dim,
                              int64_t v_dim) = 0;
  // o_lat [T, H, Dl] -> [T, H * Dv]: o[h] = W_UV[h] o_lat[h].
  virtual Tensor mla_absorb_out(const Tensor& o_lat, const LinearWeight& kv_b, int64_t heads, int64_t nope_dim,
                                int64_t v_dim) = 0;
  // Absorbed (latent-space) attention: query t attends to the key positions index[t, :] (-1 = padding, only
  // at the end of a row) of its sequence, read from kv_pool [slots, Dl + Dr] through the page tables.
  // Returns [T, H, Dl].
  virtual Tensor mla_attention_absorbed(const Tensor& q_abs, const Tensor& kv_pool, const Tensor& index,
                                        const AttnBatch& batch, int64_t latent_dim, float scale) = 0;
  // Expanded (per-head K/V) attention: k [Nk, H, Dqk], v [Nk, H, Dv]; the keys of sequence s are the rows
  // key_row0[s] + position. Returns [T, H, Dv].
  virtual Tensor attention_expanded(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& index,
                                    const AttnBatch& batch, const std::vector<int32_t>& key_row0, float scale) = 0;
  // Dense causal attention in the expanded form (MHA prefill of short contexts), K and V read where they
  // lie: query t (sequence s, position p) attends to the positions 0..p of s, which are the rows
  // key_row0[s] + 0..p of kvb and rope. q [T, H, Dn + Dr]; kvb [N, H * (Dn + Dv)], per head [K_nope | V]
  // (kv_b_proj of the latents); rope [N, *]: every head's shared rope key in columns rope_col0 .. + Dr
  // (the gathered latent rows). Returns [T, H, Dv].
  virtual Tensor attention_mha_causal(const Tensor& q, const Tensor& kvb, const Tensor& rope, int64_t rope_col0,
                                      int64_t v_dim, const AttnBatch& batch, const std::vector<int32_t>& key_row0,
                                      float scale) = 0;

  // ---- lightning indexer ----
  // For each query t at position p: if p + 1 <= topk, the positions 0..p; else the topk positions j <= p
  // with the largest sum_h w[t,h] * relu(q[t,h,:] . k_j), k_j read from k_pool through the page tables.
  // Returns I32 [T, K] (K = min(topk, longest context)), positions ascending, -1 padded.
  // fp8_values: q and the keys are IndexerMode::Fp8's values (each row e4m3 codes times a power of two, as
  // hadamard_fp8_round leaves them): a backend may then score them on FP8 hardware (the CUDA backend's
  // wgmma kernel). The same default in every override (callers through either type).
  virtual Tensor indexer_topk(const Tensor& q, const Tensor& w, const Tensor& k_pool, const AttnBatch& batch,
                              int64_t heads, int64_t head_dim, int64_t topk, bool fp8_values = false) = 0;
  // Index rows for plain causal attention (every position 0..p), I32 [T, longest context].
  virtual Tensor causal_index(const AttnBatch& batch) = 0;
  // DeepSeek's FP8 indexer numerics on x [rows, D] in place: Hadamard rotation (scale D^-1/2), then
  // e4m3 quantisation of each row with one power-of-two scale; the dequantised values are stored back.
  virtual void hadamard_fp8_round(Tensor& x, int64_t row_len) = 0;

  // ---- fused per-token steps of the attention block (backend/fused_ops.cpp) ----
  // Each default is exactly the composition of the ops above that model/layer.cpp ran before these ops
  // existed (so the CPU backend's results are those of the separate ops, bit for bit); a device backend
  // overrides them with one kernel each (a decode layer's chain of tiny launches: docs/ARCHITECTURE.md).
  //
  // The MLA latent K/V of a layer's new tokens, from kv = kv_a's output [T, Dl + Dr] (Dl = latent_dim):
  //   c = rmsnorm(kv[:, :Dl], norm_w, eps); k_rope = kv[:, Dl:] rotated (RopeLayout::Interleaved) at `pos`;
  // stored into pool rows slots[t] (-1: nowhere). fp8 null: an F32 / BF16 pool [rows, >= Dl + Dr], c at
  // column 0 and k_rope at column Dl (two cache_write calls); else a packed U8 pool of that latent layout
  // (cache_write_fp8(pool, *fp8, c, &k_rope, slots)). c and k_rope are not returned: nothing reads them but
  // the pool.
  virtual void mla_kv_write(const Tensor& kv, int64_t latent_dim, const Tensor& norm_w, float eps,
                            const std::vector<int32_t>& pos, const RopeTable& rope, Tensor& pool,
                            const KvFp8Layout* fp8, const std::vector<int32_t>& slots);
  // The lightning indexer's key of a layer's new tokens, from k = idx_wk's output [T, Di]:
  //   ki = layernorm(k, ln_w, ln_b, eps); its first rot_dim columns rotated (RopeLayout::HalfSplit) at `pos`;
  //   with hadamard_fp8, hadamard_fp8_round(ki, Di);
  // stored into pool rows slots[t] (-1: nowhere): fp8 null: an F32 / BF16 pool [rows, >= Di] at column 0
  // (cache_write); else a packed U8 pool of that indexer layout (cache_write_fp8 without a bf16 part).
  virtual void indexer_key_write(const Tensor& k, const Tensor& ln_w, const Tensor& ln_b, float eps,
                                 int64_t rot_dim, const std::vector<int32_t>& pos, const RopeTable& rope,
                                 bool hadamard_fp8, Tensor& pool, const KvFp8Layout* fp8,
                                 const std::vector<int32_t>& slots);
  // mla_absorb_q of queries whose rope parts are not rotated yet: rope(q, Dn, Dn + Dr, heads, Dr, pos,
  // Interleaved) then mla_absorb_q. q's rope columns are unspecified afterwards (the default rotates them in
  // place, a fused kernel may rotate only the copy in the result): use the result.
  virtual Tensor mla_absorb_q_rope(const Tensor& q, const LinearWeight& kv_b, int64_t heads, int64_t nope_dim,
                                   int64_t v_dim, const std::vector<int32_t>& pos, const RopeTable& rope);

  // ---- MoE ----
  // Sigmoid scores, bias for the choice only, group-limited top-k, renormalised unbiased weights x scale.
  virtual void moe_route(const Tensor& router_logits, const Tensor& bias, const MoeRouting& cfg, Tensor* ids,
                         Tensor* weights) = 0;
  // The layer's experts in the form moe_experts takes (default: the weights as they are).
  virtual std::shared_ptr<const ExpertSet> prepare_experts(std::vector<ExpertWeights> experts) {
    return std::make_shared<ExpertSet>(std::move(experts));
  }
  // y[t] = sum_k weights[t,k] * Expert_{ids[t,k]}(x[t]) (SwiGLU experts of a set this backend prepared).
  virtual Tensor moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights, const ExpertSet& experts) = 0;
  // The MoE layer's expert part: moe_experts plus, when `shared` is set, the shared expert's SwiGLU of
  // every token (default: exactly that composition, the shared expert through linear_group / silu_mul /
  // linear, added last). A backend may run the shared expert as one more expert of the grouped kernels.
  virtual Tensor moe_ffn(const Tensor& x, const Tensor& ids, const Tensor& weights, const ExpertSet& experts,
                         const ExpertWeights* shared);
  // Expert parallelism: ids (from moe_route) in [first, first + count) become local ids (id - first),
  // the others -1: another rank's experts, which moe_experts skips (their pairs add nothing here).
  virtual void moe_local_ids(Tensor& ids, int32_t first, int32_t count) = 0;

  // ---- concurrency within a step (optional) ----
  // Ops issued inside `ops` may run beside the ops issued after branch() returns, up to join_branch(): a
  // backend with more than one queue of work (CUDA streams) runs them on a second one. The caller's rule:
  // until the join, the main line neither reads what the branch writes nor writes what it reads; one
  // branch at a time (a new one joins the open one first); a captured step joins every branch it opens. A backend with one queue (the default,
  // the CPU) runs `ops` at once, in order, so the results never depend on whether branches overlap.
  // `tokens`: the step's token count (a backend may run a wide step's branch in order: CUDA does above
  // CudaOptions::branch_max_tokens, where every op fills the GPU by itself and a second stream only competes).
  virtual void branch(const std::function<void()>& ops, int64_t tokens) { ops(); }
  virtual void join_branch() {}

  // ---- step index data and captured steps (optional) ----
  // Uploads `s` once for the ops that follow (nullptr: unbind; the vectors must outlive the binding).
  virtual void bind_step(const StepIndex* s) {}
  virtual bool can_capture() const { return false; }
  // Records, without running them, the ops `body` issues for a step laid out like `example` (same token,
  // logit-row and sequence counts; page tables of up to `pages_per_seq` pages), reading its index data
  // from buffers of its own. Returns null, after logging why, if the step cannot be captured.
  virtual std::unique_ptr<CapturedStep> capture(const StepIndex& example, int32_t pages_per_seq,
                                                const std::function<Tensor()>& body) {
    return nullptr;
  }
  // Runs a captured step on `idx` (laid out as at capture). Returns what `body` returned, in memory the
  // captured steps share: valid until the next replay of any of them.
  virtual Tensor replay(CapturedStep& step, const StepIndex& idx) { fail("the {} backend cannot capture steps", name()); }

  // ---- sampling (optional: backends whose logits live on a device sample there; backend/sampling.h) ----
  virtual bool can_sample() const { return false; }
  virtual int32_t max_sample_top_logprobs() const { return 0; }
  // One result per batch row. Rows of `logits` [R, vocab] not named in the batch are left alone; the
  // named ones get their penalties applied in place (the logits are consumed).
  virtual std::vector<SampledRow> sample(Tensor& logits, const SamplingBatch& batch) {
    fail("the {} backend does not sample on its device", name());
  }
};

std::unique_ptr<Backend> make_cpu_backend(int num_threads = 0);
// The CUDA backend on GPU `device` (Hopper). Defined only in builds with CUDA (link ds_backend_cuda, which
// defines DSSERVE_HAVE_CUDA); environment: DSSERVE_CUDA_GEMM=fast|exact, DSSERVE_CUDA_POISON=1.
std::unique_ptr<Backend> make_cuda_backend(int device = 0);

}  // namespace ds::backend
