// Model: loading, the batch layout of a step, the main forward and the MTP forward.
#include "model/model.h"

#include "dist/group.h"
#include "model/checkpoint.h"
#include "model/draft_head.h"
#include "model/random_weights.h"
#include "model/rope.h"
#include "model/step.h"
#include "util/error.h"
#include "util/log.h"
#include "util/timer.h"

namespace ds::model {

Model::Model(ModelConfig config, ModelWeights weights, backend::Backend& be, ModelOptions opts, TensorParallel tp)
    : cfg_(std::move(config)),
      w_(std::move(weights)),
      be_(be),
      opts_(opts),
      tp_(tp),
      heads_(cfg_.num_attention_heads / tp.attn_size()),
      rope_(make_rope_table(cfg_)) {
  tp_.validate(cfg_);
  // What the forward implements; other DeepSeek variants (V2's softmax routing, ...) are refused clearly.
  DS_CHECK(cfg_.scoring_func == "sigmoid", "scoring_func '{}' is not supported (DeepSeek-V3/V3.2 use sigmoid)",
           cfg_.scoring_func);
  DS_CHECK(cfg_.hidden_act == "silu", "hidden_act '{}' is not supported (expected silu)", cfg_.hidden_act);
  DS_CHECK(cfg_.q_lora_rank > 0, "q_lora_rank must be set (DeepSeek-V3/V3.2 use a low-rank query)");
  if (opts_.draft_head == DraftHead::Fp8 && !w_.mtp.empty()) {
    Timer timer;
    MtpWeights& m = w_.mtp[0];
    backend::LinearWeight copy = fp8_draft_head(be_, m.head);
    if (copy.w.raw() != m.head.w.raw()) {  // not FP8 already
      m.head_rescore = m.head;
      m.head = copy;
      if (tp_.rank == 0)
        spdlog::info("draft head: an FP8 copy of the LM head for the MTP drafts, top {} rescored ({:.2f} GiB, {:.2f} s)",
                     kDraftCandidates, double(m.head.out_features * m.head.in_features) / double(1 << 30),
                     timer.seconds());
    }
  }
}

Model::~Model() = default;

IndexerMode indexer_mode_named(std::string_view name) {
  return name == "fp8" ? IndexerMode::Fp8 : IndexerMode::Fp32;
}

IndexerMode indexer_mode_for(std::string_view name, std::string_view device) {
  return name == "auto" ? (device == "cuda" ? IndexerMode::Fp8 : IndexerMode::Fp32) : indexer_mode_named(name);
}

const char* indexer_mode_name(IndexerMode m) { return m == IndexerMode::Fp8 ? "fp8" : "fp32"; }

DraftHead draft_head_named(std::string_view name, std::string_view device) {
  return name == "fp8" || (name == "auto" && device == "cuda") ? DraftHead::Fp8 : DraftHead::Shared;
}

void Model::set_options(ModelOptions o) {
  o.draft_head = opts_.draft_head;
  opts_ = o;
}

std::unique_ptr<Model> Model::load(const std::string& dir, backend::Backend& be, ModelOptions opts,
                                   const TensorParallel& tp) {
  Timer timer;
  ModelConfig cfg = load_config(dir);
  Checkpoint ckpt = Checkpoint::open(dir);
  if (tp.rank == 0)
    spdlog::info("checkpoint {}: {} tensors in {} file(s), {:.2f} GiB", dir, ckpt.num_tensors(), ckpt.num_files(),
                 double(ckpt.total_bytes()) / (1 << 30));
  ModelWeights w = load_weights(cfg, ckpt, be, tp);
  if (tp.rank == 0)
    spdlog::info("model loaded in {:.2f} s ({} layers{}, backend {}{})", timer.seconds(), cfg.num_hidden_layers,
                 w.mtp.empty() ? "" : " + MTP", be.name(),
                 tp.single() ? ""
                             : fmt::format(", rank 0 of {} ({}{})", tp.size, tp.expert_parallel ? "tp + ep" : "tp",
                                           tp.dp_attention() ? fmt::format(", dp attention x {}", tp.dp) : ""));
  return std::make_unique<Model>(std::move(cfg), std::move(w), be, opts, tp);
}

std::unique_ptr<Model> Model::load_random(const std::string& dir, backend::Backend& be, ModelOptions opts,
                                          const TensorParallel& tp, uint64_t seed) {
  Timer timer;
  ModelConfig cfg = load_config(dir);
  ModelWeights w = random_weights(cfg, be, seed, tp, cfg.num_nextn_predict_layers > 0);
  if (tp.rank == 0)
    spdlog::info("random weights for {} made in {:.2f} s ({} layers{}, backend {}{}): --load-format dummy, outputs "
                 "are noise",
                 dir, timer.seconds(), cfg.num_hidden_layers, w.mtp.empty() ? "" : " + MTP", be.name(),
                 tp.single() ? "" : fmt::format(", rank 0 of {}", tp.size));
  return std::make_unique<Model>(std::move(cfg), std::move(w), be, opts, tp);
}

StepLayout Model::layout(const ForwardBatch& batch, const KVCache& cache) const {
  DS_CHECK(!batch.seqs.empty(), "forward: empty batch");
  Step st;
  st.dp_tokens = batch.dp_tokens;
  st.ab.page_size = cache.page_size;
  for (size_t s = 0; s < batch.seqs.size(); ++s) {
    const auto& sc = batch.seqs[s];
    DS_CHECK(!sc.tokens.empty(), "forward: sequence {} has no tokens", s);
    DS_CHECK(sc.start_pos >= 0, "forward: sequence {} starts at {}", s, sc.start_pos);
    int32_t ctx = sc.start_pos + int32_t(sc.tokens.size());
    int64_t pages_needed = (int64_t(ctx) + cache.page_size - 1) / cache.page_size;
    DS_CHECK(int64_t(sc.page_table.size()) >= pages_needed,
             "forward: sequence {} needs {} pages for {} tokens, its page table has {}", s, pages_needed, ctx,
             sc.page_table.size());
    for (int64_t i = 0; i < pages_needed; ++i)
      DS_CHECK(sc.page_table[i] >= 0 && sc.page_table[i] < cache.num_pages,
               "forward: sequence {} uses page {}, the pool has {}", s, sc.page_table[i], cache.num_pages);
    // Pages past the context are not read by this step: they are not uploaded.
    st.ab.page_tables.emplace_back(sc.page_table.begin(), sc.page_table.begin() + pages_needed);
    st.logits_row0.push_back(sc.logits == LogitsMode::None ? -1 : int32_t(st.logit_rows.size()));
    const int32_t t0 = int32_t(st.ids.size()), n = int32_t(sc.tokens.size());
    if (sc.logits == LogitsMode::All)
      for (int32_t i = 0; i < n; ++i) st.logit_rows.push_back(t0 + i);
    else if (sc.logits == LogitsMode::Last)
      st.logit_rows.push_back(t0 + n - 1);
    st.token0.push_back(int32_t(st.ids.size()));
    st.ctx.push_back(ctx);
    for (size_t i = 0; i < sc.tokens.size(); ++i) {
      int32_t pos = sc.start_pos + int32_t(i);
      DS_CHECK(sc.tokens[i] >= 0 && sc.tokens[i] < cfg_.vocab_size, "forward: token id {} is outside [0, {})",
               sc.tokens[i], cfg_.vocab_size);
      st.ids.push_back(sc.tokens[i]);
      st.ab.seq_of_token.push_back(int32_t(s));
      st.ab.pos_of_token.push_back(pos);
      st.slots.push_back(st.ab.slot(int32_t(s), pos));
    }
  }
  return st;
}

ForwardOutput Model::forward(const ForwardBatch& batch, KVCache& cache) const {
  if (tp_.dp_attention() && batch.seqs.empty()) {
    idle_step(batch.dp_tokens, -1);
    return {};
  }
  Step st = layout(batch, cache);
  check_dp_tokens(st.dp_tokens, st.ids.size());
  st.cancel = batch.cancel;  // op by op only: a recorded step runs whole
  StepBinding bound(be_, st);
  Tensor normed = main_stack(st, cache);
  ForwardOutput out = finish(st, batch.logits_on_device, head_logits(st, normed, w_.lm_head));
  if (batch.want_hidden) out.hidden = batch.hidden_on_device ? normed : be_.to_host_f32(normed);
  return out;
}

Tensor Model::step_logits(const StepLayout& st, KVCache& cache, Tensor* hidden_out) const {
  Tensor normed = main_stack(st, cache);
  if (hidden_out) {
    DS_CHECK(hidden_out->dim(0) >= normed.dim(0) && hidden_out->dim(1) == normed.dim(1),
             "hidden buffer [{}, {}] for {} rows of {}", hidden_out->dim(0), hidden_out->dim(1), normed.dim(0),
             normed.dim(1));
    Tensor rows = hidden_out->rows(0, normed.dim(0));
    be_.copy_cols(rows, 0, normed, 0, normed.dim(1));
  }
  return head_logits(st, normed, w_.lm_head);
}

Tensor Model::main_stack(const Step& st, KVCache& cache) const {
  Tensor residual = embed(w_.embed, st.ids);
  Tensor pending;
  for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l) {
    if (st.cancel && st.cancel->load(std::memory_order_relaxed)) throw StepCancelled();
    pending = layer_forward(w_.layers[l], l, st, cache, residual, l == 0 ? nullptr : &pending);
  }
  return be_.add_rmsnorm(pending, residual, w_.final_norm, float(cfg_.rms_norm_eps));
}

ForwardOutput Model::mtp_forward(const ForwardBatch& batch, const MtpInput& in, KVCache& cache, int depth) const {
  DS_CHECK(depth >= 0 && size_t(depth) < w_.mtp.size(), "MTP layer {} is not loaded (the model has {})", depth,
           w_.mtp.size());
  const MtpWeights& m = w_.mtp[depth];
  if (tp_.dp_attention() && batch.seqs.empty()) {
    idle_step(batch.dp_tokens, depth);
    return {};
  }
  Step st = layout(batch, cache);
  check_dp_tokens(st.dp_tokens, st.ids.size());
  DS_CHECK(in.next_tokens.size() == st.ids.size() && in.hidden.dim(0) == int64_t(st.ids.size()),
           "MTP input has {} tokens / {} hidden rows for a batch of {} tokens", in.next_tokens.size(),
           in.hidden.dim(0), st.ids.size());
  StepBinding bound(be_, st);
  Tensor normed = mtp_stack(st, cache, depth, embed(m.embed, in.next_tokens),
                            in.hidden.device() == be_.device() ? in.hidden : be_.from_host(in.hidden));
  ForwardOutput out = finish(st, batch.logits_on_device, head_logits(st, normed, m.head, &m.head_rescore));
  if (batch.want_hidden) out.hidden = batch.hidden_on_device ? normed : be_.to_host_f32(normed);
  return out;
}

Tensor Model::mtp_input(const MtpWeights& m, int64_t tokens, const Tensor& embedded, const Tensor& hidden) const {
  const float eps = float(cfg_.rms_norm_eps);
  const int64_t H = cfg_.hidden_size;
  // u = eh_proj([enorm(embed(next token)) | hnorm(hidden)]): embedding first, as DeepSeek's weights expect.
  Tensor e = be_.rmsnorm(embedded, m.enorm, eps);
  Tensor h = be_.rmsnorm(hidden, m.hnorm, eps);
  Tensor cat = be_.alloc({tokens, 2 * H}, be_.act_dtype());
  be_.copy_cols(cat, 0, e, 0, H);
  be_.copy_cols(cat, H, h, 0, H);
  return be_.linear(cat, m.eh_proj);
}

Tensor Model::mtp_stack(const Step& st, KVCache& cache, int depth, const Tensor& embedded,
                        const Tensor& hidden) const {
  const MtpWeights& m = w_.mtp[size_t(depth)];
  Tensor residual = mtp_input(m, int64_t(st.ids.size()), embedded, hidden);
  Tensor pending = layer_forward(m.layer, cfg_.num_hidden_layers + depth, st, cache, residual, nullptr);
  return be_.add_rmsnorm(pending, residual, m.head_norm, float(cfg_.rms_norm_eps));
}

void Model::mtp_fill(const ForwardBatch& batch, const MtpInput& in, KVCache& cache, int depth) const {
  DS_CHECK(depth >= 0 && size_t(depth) < w_.mtp.size(), "MTP layer {} is not loaded (the model has {})", depth,
           w_.mtp.size());
  DS_CHECK(batch.dp_tokens.empty(), "an MTP KV fill takes no part in DP attention's exchanges");
  for (const auto& sc : batch.seqs)
    DS_CHECK(sc.logits == LogitsMode::None, "an MTP KV fill computes no logits");
  const MtpWeights& m = w_.mtp[size_t(depth)];
  Step st = layout(batch, cache);
  DS_CHECK(in.next_tokens.size() == st.ids.size() && in.hidden.dim(0) == int64_t(st.ids.size()),
           "MTP fill input has {} tokens / {} hidden rows for a batch of {} tokens", in.next_tokens.size(),
           in.hidden.dim(0), st.ids.size());
  StepBinding bound(be_, st);
  mtp_fill_body(st, cache, depth, embed(m.embed, in.next_tokens),
                in.hidden.device() == be_.device() ? in.hidden : be_.from_host(in.hidden));
}

void Model::mtp_fill_pass(const StepLayout& st, KVCache& cache, const Tensor& hidden_in) const {
  DS_CHECK(has_mtp(), "an MTP fill pass on a model without an MTP layer");
  DS_CHECK(hidden_in.dim(0) == int64_t(st.ids.size()), "MTP fill pass: {} hidden rows for {} tokens",
           hidden_in.dim(0), st.ids.size());
  mtp_fill_body(st, cache, 0, embed(w_.mtp[0].embed, st.ids), hidden_in);
}

void Model::mtp_fill_body(const Step& st, KVCache& cache, int depth, const Tensor& embedded,
                          const Tensor& hidden) const {
  const MtpWeights& m = w_.mtp[size_t(depth)];
  Tensor residual = mtp_input(m, int64_t(st.ids.size()), embedded, hidden);
  // The layer's first ops as layer_forward and attention() run them (no pending output: rmsnorm alone),
  // but only the projections the caches take.
  const AttentionWeights& a = m.layer.attn;
  Tensor h = be_.rmsnorm(residual, m.layer.input_norm, float(cfg_.rms_norm_eps));
  std::vector<const backend::LinearWeight*> down = {&a.kv_a};
  if (cfg_.has_indexer()) down.push_back(&a.idx_wk);
  std::vector<Tensor> proj = be_.linear_group(h, down);
  write_kv(a, cfg_.num_hidden_layers + depth, st, cache, proj[0], cfg_.has_indexer() ? &proj[1] : nullptr);
}

Tensor Model::mtp_draft_pass(const StepLayout& st, KVCache& cache, const Tensor* ids, const Tensor& hidden_in,
                             Tensor& ids_out, Tensor& hidden_out) const {
  DS_CHECK(has_mtp(), "a draft pass on a model without an MTP layer");
  const int64_t T = int64_t(st.ids.size()), R = int64_t(st.logit_rows.size());
  DS_CHECK(hidden_in.dim(0) == T && (!ids || ids->numel() == T) && R > 0 && ids_out.numel() >= R &&
               hidden_out.dim(0) >= R && hidden_out.dim(1) == cfg_.hidden_size && hidden_out.dtype() == DType::F32,
           "draft pass: {} tokens, {} logits rows, hidden in {}, ids out {}, hidden out {}", T, R,
           hidden_in.describe(), ids_out.describe(), hidden_out.describe());
  const MtpWeights& m = w_.mtp[0];
  Tensor normed = mtp_stack(st, cache, 0, ids ? embed_ids(m.embed, *ids) : embed(m.embed, st.ids), hidden_in);
  Tensor picked = be_.cache_gather(normed, st.logit_rows);  // F32 [R, H]
  Tensor logits = gather_vocab(draft_logits_local(picked, m.head, &m.head_rescore));
  be_.argmax_rows(logits, ids_out);
  Tensor rows = hidden_out.rows(0, R);
  be_.copy_cols(rows, 0, picked, 0, picked.dim(1));
  return ids_out.view({ids_out.numel()}).rows(0, R);
}

Tensor Model::head_logits(const Step& st, const Tensor& normed, const backend::LinearWeight& head,
                          const backend::LinearWeight* rescore) const {
  if (st.logit_rows.empty()) return Tensor();
  Tensor picked = be_.cache_gather(normed, st.logit_rows);  // row gather from the [T, H] activations
  return gather_vocab(draft_logits_local(picked, head, rescore));
}

// This rank's vocabulary slice: with a rescoring head, its own top candidates rescored before the slices
// are joined (the rows of the checkpoint's head are split over the ranks as the copy's are).
Tensor Model::draft_logits_local(const Tensor& picked, const backend::LinearWeight& head,
                                 const backend::LinearWeight* rescore) const {
  Tensor local = be_.linear(picked, head);
  if (rescore && rescore->defined()) be_.rescore_topk(local, picked, *rescore, kDraftCandidates);
  return local;
}

Tensor Model::embed(const Tensor& table, const std::vector<int32_t>& ids) const {
  dist::Group* g = tp_.attention_group();
  if (!g) return be_.embedding(table, ids);
  Tensor rows = be_.embedding_part(table, ids, tp_.split_attn(cfg_.vocab_size).first);
  reduce(rows);
  return rows;
}

Tensor Model::embed_ids(const Tensor& table, const Tensor& ids) const {
  dist::Group* g = tp_.attention_group();
  if (!g) return be_.embedding_ids(table, ids, 0);
  Tensor rows = be_.embedding_ids(table, ids, tp_.split_attn(cfg_.vocab_size).first);
  reduce(rows);
  return rows;
}

// Through the group whenever there is one, also of one rank (the NCCL path checked on one GPU).
void Model::reduce(Tensor& partial) const {
  if (dist::Group* g = tp_.attention_group()) g->all_reduce_sum(partial);
}

Tensor Model::gather_vocab(const Tensor& local) const {
  dist::Group* g = tp_.attention_group();
  if (!g) return local;
  // [R, V / n] per rank -> [n * R, V / n] rank after rank -> [R, V] with rank r's columns at r * V / n.
  const int64_t R = local.dim(0), Vl = local.dim(1), n = g->size();
  Tensor all = be_.alloc({n * R, Vl}, local.dtype());
  g->all_gather(local, all);
  Tensor logits = be_.alloc({R, n * Vl}, local.dtype());
  for (int64_t r = 0; r < n; ++r) be_.copy_cols(logits, r * Vl, all.rows(r * R, (r + 1) * R), 0, Vl);
  return logits;
}

ForwardOutput Model::finish(const Step& st, bool logits_on_device, const Tensor& logits) const {
  ForwardOutput out;
  out.logits_row0 = st.logits_row0;
  if (logits.defined()) out.logits = logits_on_device ? logits : be_.to_host_f32(logits);
  return out;
}

}  // namespace ds::model
