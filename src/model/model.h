// The DeepSeek-V3.2 model: weights + the forward, written once against backend::Backend.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "backend/backend.h"
#include "model/config.h"
#include "model/forward_batch.h"
#include "model/kv_cache.h"
#include "model/tensor_parallel.h"
#include "model/weights.h"

namespace ds::model {

enum class IndexerMode : uint8_t {
  Fp32,  // scores as transformers' DeepseekV32 computes them (no rotation, no quantisation)
  Fp8,   // DeepSeek's official numerics: Hadamard rotation + e4m3 q and k with power-of-two scales
};
enum class AttentionForm : uint8_t {
  Absorbed,  // attend in the latent space (what serving uses for every step)
  Expanded,  // per-head K/V from kv_b_proj (the textbook form; kept to check the absorbed one)
};

// Dense MHA prefill (Backend::attention_mha_causal) in place of the absorbed attention, for sequences whose
// queries attend to every earlier key (model/layer.cpp, mha_sequences).
enum class MhaPrefill : uint8_t {
  Auto,    // where it costs fewer FLOPs (prefill chunks; not decode rows over long contexts)
  Never,   // the absorbed form for every step
  Always,  // every step that can take it (tests)
};
// DSSERVE_MHA_PREFILL=auto|off|on: what MhaPrefill::Auto means in this process (unset: auto), so that
// serving and benchmarks can force either path without a flag.
MhaPrefill mha_prefill_from_env();

// The LM head the MTP draft reads (model/draft_head.h): the checkpoint's, shared with the main model, or an
// FP8 block-scaled copy made at load (half the bytes of a BF16 head per chained draft pass). Only drafts read
// it; outputs stay the target's.
enum class DraftHead : uint8_t {
  Shared,
  Fp8,
};

// The command-line words for these options (serve, bench model, the model commands): --indexer fp32 | fp8
// (anything else is fp32; the commands validate) and --speculative-draft-head auto | shared | fp8, where auto
// means fp8 on the cuda device and shared elsewhere.
IndexerMode indexer_mode_named(std::string_view name);
// --indexer of serve and bench model: "auto" is DeepSeek's FP8 indexer on CUDA (what DeepSeek's inference
// code, SGLang and vLLM serve; its prefill scores on FP8 tensor cores) and transformers' fp32 one on the CPU
// (the golden tests' reference); "fp8" / "fp32" as named.
IndexerMode indexer_mode_for(std::string_view name, std::string_view device);
const char* indexer_mode_name(IndexerMode m);
DraftHead draft_head_named(std::string_view name, std::string_view device);

struct ModelOptions {
  IndexerMode indexer = IndexerMode::Fp32;
  AttentionForm attention = AttentionForm::Absorbed;
  MhaPrefill mha_prefill = MhaPrefill::Auto;  // used with AttentionForm::Absorbed only
  DraftHead draft_head = DraftHead::Shared;    // made at construction (models without MTP: ignored)
};

// Inputs of the MTP (next-n) layer for a step: for each token t of the batch, the main model's
// final-norm hidden state at t and the token that follows t.
struct MtpInput {
  Tensor hidden;                    // [T, hidden_size], rows in the batch's token order (host or device)
  std::vector<int32_t> next_tokens; // [T]
};

struct StepLayout;

class Model {
 public:
  // `weights` must be cut for `tp` (assemble_weights with the same TensorParallel).
  Model(ModelConfig config, ModelWeights weights, backend::Backend& be, ModelOptions opts, TensorParallel tp = {});
  ~Model();
  // Reads config.json and the safetensors of `dir` (mmap; the files are released after loading); with
  // tp.size > 1, this rank's part only (every rank of the group loads its own, on its own thread).
  static std::unique_ptr<Model> load(const std::string& dir, backend::Backend& be, ModelOptions opts = {},
                                     const TensorParallel& tp = {});
  // config.json of `dir` with random weights made in the backend's memory instead of the checkpoint's
  // (serve --load-format dummy, as SGLang's: models larger than the disk); this rank's part only.
  static std::unique_ptr<Model> load_random(const std::string& dir, backend::Backend& be, ModelOptions opts = {},
                                            const TensorParallel& tp = {}, uint64_t seed = 0);

  const ModelConfig& config() const { return cfg_; }
  const ModelOptions& options() const { return opts_; }
  // Changes the forward's options; the draft head stays what construction made.
  void set_options(ModelOptions o);
  bool has_mtp() const { return !w_.mtp.empty(); }
  backend::Backend& backend() const { return be_; }
  const TensorParallel& tensor_parallel() const { return tp_; }

  // latent_dtype: the MLA latent pools' element type (default: the backend's activation dtype).
  KVCache make_cache(int32_t num_pages, int32_t page_size, std::optional<DType> latent_dtype = {}) const {
    return KVCache::create(be_, cfg_, num_pages, page_size, has_mtp(), latent_dtype.value_or(be_.act_dtype()));
  }
  // Runs the main model over the batch op by op, writing each token's cache entries first. Under DP
  // attention a batch without sequences is an idle step (ForwardBatch::dp_tokens): no output.
  ForwardOutput forward(const ForwardBatch& batch, KVCache& cache) const;

  // The two halves of forward() for callers that pad or record steps (runtime/step_recorder.h): the
  // flattened layout of a batch (checked against the pools), and the step's logits rows left on the
  // backend's device (undefined when no sequence asks for logits). step_logits needs the layout's index
  // data bound (model/step.h, StepBinding) and issues only device work, so a backend can record it.
  StepLayout layout(const ForwardBatch& batch, const KVCache& cache) const;
  // hidden_out: also copies the final-norm hidden rows of the step's tokens into its first rows (a buffer
  // of fixed address, so that a recorded step writes it too).
  Tensor step_logits(const StepLayout& st, KVCache& cache, Tensor* hidden_out = nullptr) const;
  // Runs MTP layer `depth` (0-based) over the batch; its cache entries go to layer num_hidden_layers+depth.
  // The logits rows follow batch.seqs[i].logits as in forward(); hidden = the layer's shared_head.norm output.
  // With DraftHead::Fp8 the logits are the FP8 copy's top candidates rescored, -inf elsewhere.
  ForwardOutput mtp_forward(const ForwardBatch& batch, const MtpInput& in, KVCache& cache, int depth = 0) const;
  // Only the KV entries MTP layer `depth` would write for the batch's tokens (its latent + rope key and its
  // indexer key: the same ops as mtp_forward's, on the same inputs), none of its queries, attention, FFN
  // or head: what the layer needs of positions whose own output nobody reads (every token of a draft
  // step but each drafting sequence's last). No collective beyond the embedding's (it runs on its own,
  // outside DP attention's exchanges); batch.dp_tokens must be empty and no sequence may ask for logits.
  void mtp_fill(const ForwardBatch& batch, const MtpInput& in, KVCache& cache, int depth = 0) const;
  // One pass of MTP layer 0 that issues only device work, for a runner to record (runtime/draft_recorder.h):
  // over the bound step `st`, with token ids from `ids` (I32 [T] on the device, written by the pass before;
  // null: st.ids) and the hidden states hidden_in [T, hidden_size]; the greedy token of each logits row
  // (st.logit_rows) goes to ids_out[0, R) and that row's final-norm hidden state to hidden_out rows
  // [0, R) (F32). Returns ids_out's first R entries.
  Tensor mtp_draft_pass(const StepLayout& st, KVCache& cache, const Tensor* ids, const Tensor& hidden_in,
                        Tensor& ids_out, Tensor& hidden_out) const;
  // mtp_fill's device work over the bound step `st` (token ids st.ids, hidden states hidden_in [T, hidden]),
  // for a runner to record (runtime/draft_recorder.h: its KV-only passes).
  void mtp_fill_pass(const StepLayout& st, KVCache& cache, const Tensor& hidden_in) const;

 private:
  using Step = StepLayout;
  // Embedding, every decoder layer and the final norm: the [T, hidden] states the heads read.
  Tensor main_stack(const Step& st, KVCache& cache) const;
  // The logits of the step's logit rows (undefined when it asks for none), left on the backend's device.
  // rescore: the MTP layer's head_rescore (model/draft_head.h), when its head is an FP8 copy: the logits are
  // then its top candidates' rescored values, -inf elsewhere.
  Tensor head_logits(const Step& st, const Tensor& normed, const backend::LinearWeight& head,
                     const backend::LinearWeight* rescore = nullptr) const;
  Tensor draft_logits_local(const Tensor& picked, const backend::LinearWeight& head,
                            const backend::LinearWeight* rescore) const;
  // One decoder layer on the residual stream. `pending` is the previous block's output not yet added.
  Tensor layer_forward(const LayerWeights& lw, int64_t layer, const Step& st, KVCache& cache, Tensor& residual,
                       const Tensor* pending) const;
  Tensor attention(const LayerWeights& lw, int64_t layer, const Step& st, KVCache& cache, const Tensor& h) const;
  // Per sequence of the step, whether it takes the dense MHA prefill path; empty when none does (the
  // same in every layer of the step).
  std::vector<char> mha_sequences(const Step& st) const;
  // The attention of a step where some sequences take the MHA path: those densely, the others absorbed
  // over causal_index (every key is selected), each part on its own rows. Returns [T, heads * Dv].
  Tensor attention_split(const AttentionWeights& a, int64_t layer, const Step& st, KVCache& cache, const Tensor& q,
                         const std::vector<char>& mha) const;
  // Every cached key of the step's sequences through kv_b_proj, attended densely and causally.
  Tensor attention_mha(const AttentionWeights& a, int64_t layer, const Step& st, KVCache& cache, const Tensor& q) const;
  // The lightning indexer in parts, so that the attention block can run the keys and the weights beside
  // its query path (Backend::branch). Its keys: k_proj (h through idx_wk) normalised, rotated and written
  // to the layer's cache; its head weights from h, scaled; its queries (q_lat through idx_wq_b) rotated in
  // place (+ Hadamard and FP8 rounding); the top-k index of those queries over the cached keys.
  void indexer_keys(const AttentionWeights& a, int64_t layer, const Step& st, KVCache& cache,
                    const Tensor& k_proj) const;
  // The step's KV entries of `layer` from the projections of its tokens: the latent (kv_a's output:
  // normalised, its rope key rotated) and, with an indexer, the indexer's key (idx_wk's output; null
  // without one). Shared by attention() and mtp_fill(), so both write the same bits from the same inputs.
  void write_kv(const AttentionWeights& a, int64_t layer, const Step& st, KVCache& cache, const Tensor& latent_proj,
                const Tensor* index_proj) const;
  Tensor indexer_weights(const AttentionWeights& a, const Tensor& h) const;
  void indexer_query(const Step& st, Tensor& q_proj) const;
  Tensor indexer_topk(int64_t layer, const Step& st, KVCache& cache, const Tensor& q_proj,
                      const Tensor& weights) const;
  Tensor ffn(const FfnWeights& f, const Tensor& h) const;
  // DP attention: the FFN over all ranks on the tokens of every DP group (dp_tokens[g] each): this rank's
  // rows of h (null: an idle group) in, their summed output out ([T, H]; undefined when idle).
  Tensor ffn_across_dp(const FfnWeights& f, const Tensor* h, const std::vector<int32_t>& dp_tokens) const;
  // An idle DP group's step: the exchanges of the main layers, or of MTP layer `mtp_depth` (>= 0).
  void idle_step(const std::vector<int32_t>& dp_tokens, int mtp_depth) const;
  void check_dp_tokens(const std::vector<int32_t>& dp_tokens, size_t tokens) const;
  ForwardOutput finish(const Step& st, bool logits_on_device, const Tensor& logits) const;
  // Tensor parallel joins: the sum of the attention group's partial outputs (all ranks without DP
  // attention); the LM head's vocabulary slices.
  void reduce(Tensor& partial) const;
  // Embedding rows of `ids` from this rank's part of the vocabulary, summed over the ranks.
  Tensor embed(const Tensor& table, const std::vector<int32_t>& ids) const;
  Tensor embed_ids(const Tensor& table, const Tensor& ids) const;  // ids on the device
  // The MTP layer's body: from the embedded next tokens and the previous hidden states to its head norm.
  Tensor mtp_stack(const Step& st, KVCache& cache, int depth, const Tensor& embedded, const Tensor& hidden) const;
  // mtp_fill's ops after the embedding.
  void mtp_fill_body(const Step& st, KVCache& cache, int depth, const Tensor& embedded, const Tensor& hidden) const;
  // Its input: eh_proj over [enorm(embedded) | hnorm(hidden)], the layer's residual stream.
  Tensor mtp_input(const MtpWeights& m, int64_t tokens, const Tensor& embedded, const Tensor& hidden) const;
  Tensor gather_vocab(const Tensor& local_logits) const;

  ModelConfig cfg_;
  ModelWeights w_;
  backend::Backend& be_;
  ModelOptions opts_;
  TensorParallel tp_;
  int64_t heads_;  // attention heads on this rank
  backend::RopeTable rope_;
};

}  // namespace ds::model
