// One DeepSeek-V3.2 decoder layer: MLA with the DSA lightning indexer, then the dense MLP or the MoE.
// Written once against backend::Backend; spec/dsv32.md section 3 is the math.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

#include "model/model.h"
#include "model/step.h"
#include "util/error.h"

namespace ds::model {

using backend::RopeLayout;

namespace {

// True when the top-k would select every earlier key of every query of the step (each context fits in
// topk): then indexer_topk's rows equal causal_index's (positions 0..p ascending, -1 padded, the same
// width min(topk, context_width) = context_width), so the query projection, the weights, the scores and
// the top-k can be skipped. Decided from context_width, which is the padded max_context of a recorded
// step: every replay of a context bucket takes the branch it was recorded with (a bucket above topk keeps
// the full path even when its contexts are short). A step mixing short and long sequences keeps the
// full path (the backends skip the scores of short queries where they can).
bool selects_every_key(const backend::AttnBatch& ab, int64_t topk) { return backend::context_width(ab) <= topk; }

// The MHA path's transient K/V (the kv_b product of every key row, fp32) stays below this many elements
// (2 GiB): a step of many long sequences keeps the absorbed path rather than allocate more.
constexpr double kMhaMaxExpanded = double(int64_t(1) << 29);

}  // namespace

MhaPrefill mha_prefill_from_env() {
  static const MhaPrefill mode = [] {
    const char* e = std::getenv("DSSERVE_MHA_PREFILL");
    const std::string v = e ? e : "auto";
    DS_CHECK(v == "auto" || v == "on" || v == "off", "DSSERVE_MHA_PREFILL must be auto, on or off, got '{}'", v);
    return v == "on" ? MhaPrefill::Always : v == "off" ? MhaPrefill::Never : MhaPrefill::Auto;
  }();
  return mode;
}

// The dense MHA path computes the same attention as the absorbed one where every query attends to every
// earlier key of its sequence (V3; V3.2 while every context fits index_topk, where the indexer hands over
// causal_index). Not for recorded steps (max_context > 0: decode and verify graphs), whose replays must
// not change the host-side row lists this path builds from the contexts.
// Decided per sequence, so that a sequence's numerics do not depend on what else its step holds (a
// decode row stays absorbed beside a prefill chunk; the chunk goes MHA beside decode rows). Auto compares
// FLOPs per head: the MHA path expands the sequence's every key row (ctx rows x 2 Dl (Dn + Dv), kv_b_proj)
// and attends at 2 (Dn + Dr + Dv) per query-key pair; the absorbed one absorbs each of its n new queries
// (n x the same 2 Dl (Dn + Dv): absorb_q and absorb_out) and attends at 2 (2 Dl + Dr) per pair. So MHA
// wins when the rows the step did not bring (ctx - n: prefix hits, earlier chunks) cost less to expand
// than the pairs save: a fresh prefill always, a decode token over a long context never, a chunk after a
// long cached prefix when it brings more than about 170 tokens (full width; fewer after a short prefix).
std::vector<char> Model::mha_sequences(const Step& st) const {
  const size_t S = st.ctx.size();
  if (opts_.attention != AttentionForm::Absorbed || st.ab.max_context > 0 || S == 0) return {};
  const MhaPrefill mode = opts_.mha_prefill == MhaPrefill::Auto ? mha_prefill_from_env() : opts_.mha_prefill;
  if (mode == MhaPrefill::Never) return {};
  if (cfg_.has_indexer() && !selects_every_key(st.ab, cfg_.index_topk)) return {};
  const double Dn = double(cfg_.qk_nope_head_dim), Dr = double(cfg_.qk_rope_head_dim), Dv = double(cfg_.v_head_dim),
               Dl = double(cfg_.kv_lora_rank), expand = 2 * Dl * (Dn + Dv);
  std::vector<double> n(S, 0), pairs(S, 0);
  for (size_t t = 0; t < st.ab.seq_of_token.size(); ++t) {
    n[size_t(st.ab.seq_of_token[t])] += 1;
    pairs[size_t(st.ab.seq_of_token[t])] += double(st.ab.pos_of_token[t]) + 1;
  }
  std::vector<char> mha(S, 0);
  double rows = 0;
  for (size_t s = 0; s < S; ++s) {
    const double ctx = st.ctx[s];
    mha[s] = mode == MhaPrefill::Always ||
             ctx * expand + pairs[s] * 2 * (Dn + Dr + Dv) < n[s] * expand + pairs[s] * 2 * (2 * Dl + Dr);
    if (mha[s]) rows += ctx;
  }
  if (rows == 0 || rows * double(heads_) * (Dn + Dv) > kMhaMaxExpanded) return {};
  return mha;
}

Tensor Model::layer_forward(const LayerWeights& lw, int64_t layer, const Step& st, KVCache& cache, Tensor& residual,
                            const Tensor* pending) const {
  const float eps = float(cfg_.rms_norm_eps);
  Tensor h = pending ? be_.add_rmsnorm(*pending, residual, lw.input_norm, eps) : be_.rmsnorm(residual, lw.input_norm, eps);
  Tensor attn = attention(lw, layer, st, cache, h);  // this rank's heads' share of o_proj
  reduce(attn);
  Tensor h2 = be_.add_rmsnorm(attn, residual, lw.post_attn_norm, eps);
  if (tp_.ffn_across_dp(lw.ffn.moe)) return ffn_across_dp(lw.ffn, &h2, st.dp_tokens);
  Tensor y = ffn(lw.ffn, h2);  // this rank's slices / experts
  reduce(y);
  return y;
}

Tensor Model::attention(const LayerWeights& lw, int64_t layer, const Step& st, KVCache& cache, const Tensor& h) const {
  const auto& a = lw.attn;
  const float eps = float(cfg_.rms_norm_eps);
  const int64_t T = h.dim(0), heads = heads_, Dn = cfg_.qk_nope_head_dim,
                Dr = cfg_.qk_rope_head_dim, Dv = cfg_.v_head_dim, Dl = cfg_.kv_lora_rank, Dq = Dn + Dr;
  const auto& pos = st.ab.pos_of_token;

  // Queries: q_a -> RMSNorm (this normalised latent also feeds the indexer) -> q_b, rope part rotated (by
  // mla_absorb_q_rope on the absorbed path: one kernel with the rope part's copy; else by rope() below).
  // q_a, kv_a and the indexer's key projection all read h: one launch where the backend can (decode).
  std::vector<const backend::LinearWeight*> down = {&a.q_a, &a.kv_a};
  if (cfg_.has_indexer()) down.push_back(&a.idx_wk);
  std::vector<Tensor> proj = be_.linear_group(h, down);
  const bool selecting = cfg_.has_indexer() && !selects_every_key(st.ab, cfg_.index_topk);

  // Keys/values, beside the query path (a branch: a second stream on the GPU; joined before the caches or
  // the weights are read): one latent c (normalised) and one shared rope key per token written to the cache
  // (one fused op: RMSNorm of the latent part, rope of the key part, the pool's format); the indexer's keys,
  // cached for every token (also while contexts are short enough to need no selection); its head weights.
  Tensor idx_weights;
  be_.branch(
      [&] {
        write_kv(a, layer, st, cache, proj[1], cfg_.has_indexer() ? &proj[2] : nullptr);
        if (selecting) idx_weights = indexer_weights(a, h);
      },
      T);

  Tensor q_lat = be_.rmsnorm(proj[0], a.q_a_norm, eps);
  // q_b and, when the indexer will select, its query projection both read q_lat: one launch too.
  std::vector<const backend::LinearWeight*> up = {&a.q_b};
  if (selecting) up.push_back(&a.idx_wq_b);
  std::vector<Tensor> qs = be_.linear_group(q_lat, up);
  Tensor q = qs[0];
  auto rotate_q = [&] { be_.rope(q, Dn, Dq, heads, Dr, pos, rope_, RopeLayout::Interleaved); };
  const Tensor& pool = cache.latent[layer];

  // Short contexts: the sequences that take the dense MHA path attend to every earlier key over K/V
  // expanded from the latents; the others (if any) the absorbed way over causal_index.
  const std::vector<char> mha = mha_sequences(st);
  if (!mha.empty()) {
    rotate_q();
    be_.join_branch();
    return be_.linear(attention_split(a, layer, st, cache, q, mha), a.o);
  }

  // Which earlier tokens each query attends to: the indexer's top-k (DSA), or all of them (V3). On the
  // absorbed path the query's absorption runs beside the scores and the top-k (another branch).
  const bool absorbed = opts_.attention == AttentionForm::Absorbed;
  Tensor index, q_abs;
  auto absorb_q = [&] { q_abs = be_.mla_absorb_q_rope(q, a.kv_b, heads, Dn, Dv, pos, rope_); };
  if (selecting) {
    indexer_query(st, qs[1]);
    be_.join_branch();
    if (absorbed) be_.branch(absorb_q, T);
    index = indexer_topk(layer, st, cache, qs[1], idx_weights);
    be_.join_branch();
  } else {
    be_.join_branch();
    index = be_.causal_index(st.ab);
    if (absorbed) absorb_q();
  }

  const float scale = float(cfg_.softmax_scale());
  Tensor o;
  if (absorbed) {
    Tensor o_lat = be_.mla_attention_absorbed(q_abs, pool, index, st.ab, Dl, scale);
    o = be_.mla_absorb_out(o_lat, a.kv_b, heads, Dn, Dv);
  } else {
    // Expanded: rebuild per-head K and V of every cached token of each sequence from the latents.
    rotate_q();
    std::vector<int32_t> slots, key_row0;
    for (size_t s = 0; s < st.ctx.size(); ++s) {
      key_row0.push_back(int32_t(slots.size()));
      for (int32_t p = 0; p < st.ctx[s]; ++p) slots.push_back(st.ab.slot(int32_t(s), p));
    }
    Tensor lat = cache.gather_latent(be_, layer, slots);  // [N, Dl + Dr]
    const int64_t N = lat.dim(0);
    Tensor c_all = be_.alloc({N, Dl}, be_.act_dtype());
    be_.copy_cols(c_all, 0, lat, 0, Dl);
    Tensor kvb = be_.linear(c_all, a.kv_b);  // [N, heads * (Dn + Dv)]
    Tensor k = be_.alloc({N, heads, Dq}, be_.act_dtype()), v = be_.alloc({N, heads, Dv}, be_.act_dtype());
    for (int64_t hd = 0; hd < heads; ++hd) {
      be_.copy_cols(k, hd * Dq, kvb, hd * (Dn + Dv), Dn);
      be_.copy_cols(k, hd * Dq + Dn, lat, Dl, Dr);
      be_.copy_cols(v, hd * Dv, kvb, hd * (Dn + Dv) + Dn, Dv);
    }
    Tensor o3 = be_.attention_expanded(q.view({T, heads, Dq}), k, v, index, st.ab, key_row0, scale);
    o = o3.view({T, heads * Dv});
  }
  return be_.linear(o, a.o);
}

namespace {
// The part of a step made of the sequences with pick[s] == want: the step's token rows it takes, and its
// own layout (sequences renumbered; positions, page tables and contexts as in the step).
struct SubStep {
  std::vector<int32_t> rows;
  StepLayout st;
};
SubStep sub_step(const StepLayout& st, const std::vector<char>& pick, char want) {
  SubStep sub;
  sub.st.ab.page_size = st.ab.page_size;
  std::vector<int32_t> renumber(st.ctx.size(), -1);
  for (size_t s = 0; s < st.ctx.size(); ++s) {
    if (pick[s] != want) continue;
    renumber[s] = int32_t(sub.st.ctx.size());
    sub.st.ctx.push_back(st.ctx[s]);
    sub.st.ab.page_tables.push_back(st.ab.page_tables[s]);
  }
  for (size_t t = 0; t < st.ab.seq_of_token.size(); ++t) {
    const int32_t s = st.ab.seq_of_token[t];
    if (pick[size_t(s)] != want) continue;
    sub.rows.push_back(int32_t(t));
    sub.st.ab.seq_of_token.push_back(renumber[size_t(s)]);
    sub.st.ab.pos_of_token.push_back(st.ab.pos_of_token[t]);
  }
  return sub;
}
}  // namespace

Tensor Model::attention_split(const AttentionWeights& a, int64_t layer, const Step& st, KVCache& cache,
                              const Tensor& q, const std::vector<char>& mha) const {
  if (std::find(mha.begin(), mha.end(), 0) == mha.end()) return attention_mha(a, layer, st, cache, q);
  // Mixed: each part on its own rows (gathered with the embedding op, a row gather), written back by row.
  const int64_t T = q.dim(0), Dn = cfg_.qk_nope_head_dim, Dv = cfg_.v_head_dim, Dl = cfg_.kv_lora_rank;
  const SubStep dense = sub_step(st, mha, 1), rest = sub_step(st, mha, 0);
  Tensor o_dense = attention_mha(a, layer, dense.st, cache, be_.embedding(q, dense.rows));
  Tensor q_abs = be_.mla_absorb_q(be_.embedding(q, rest.rows), a.kv_b, heads_, Dn, Dv);
  Tensor o_lat = be_.mla_attention_absorbed(q_abs, cache.latent[layer], be_.causal_index(rest.st.ab), rest.st.ab, Dl,
                                            float(cfg_.softmax_scale()));
  Tensor o_rest = be_.mla_absorb_out(o_lat, a.kv_b, heads_, Dn, Dv);
  Tensor o = be_.alloc({T, heads_ * Dv}, be_.act_dtype());
  be_.cache_write(o, 0, o_dense, dense.rows);
  be_.cache_write(o, 0, o_rest, rest.rows);
  return o;
}

Tensor Model::attention_mha(const AttentionWeights& a, int64_t layer, const Step& st, KVCache& cache,
                            const Tensor& q) const {
  const int64_t T = q.dim(0), Dn = cfg_.qk_nope_head_dim, Dr = cfg_.qk_rope_head_dim, Dv = cfg_.v_head_dim,
                Dl = cfg_.kv_lora_rank;
  // The latent rows of every sequence's positions 0..ctx-1 (prefix-cache hits and earlier chunks
  // included; a packed FP8 pool is dequantised by the gather), sequence after sequence.
  std::vector<int32_t> slots, key_row0;
  for (size_t s = 0; s < st.ctx.size(); ++s) {
    key_row0.push_back(int32_t(slots.size()));
    for (int32_t p = 0; p < st.ctx[s]; ++p) slots.push_back(st.ab.slot(int32_t(s), p));
  }
  Tensor lat = cache.gather_latent(be_, layer, slots);  // [N, Dl + Dr]
  Tensor c_all = be_.alloc({lat.dim(0), Dl}, be_.act_dtype());
  be_.copy_cols(c_all, 0, lat, 0, Dl);
  Tensor kvb = be_.linear(c_all, a.kv_b);  // [N, heads * (Dn + Dv)]: per head K_nope | V
  Tensor o = be_.attention_mha_causal(q.view({T, heads_, Dn + Dr}), kvb, lat, Dl, Dv, st.ab, key_row0,
                                      float(cfg_.softmax_scale()));
  return o.view({T, heads_ * Dv});
}

void Model::write_kv(const AttentionWeights& a, int64_t layer, const Step& st, KVCache& cache,
                     const Tensor& latent_proj, const Tensor* index_proj) const {
  cache.write_latent(be_, layer, latent_proj, a.kv_a_norm, float(cfg_.rms_norm_eps), st.ab.pos_of_token, rope_,
                     st.slots);
  if (index_proj) indexer_keys(a, layer, st, cache, *index_proj);
}

void Model::indexer_keys(const AttentionWeights& a, int64_t layer, const Step& st, KVCache& cache,
                         const Tensor& k_proj) const {
  // Indexer heads are [rope | rest] and rotate in the half-split layout (unlike MLA). The key: LayerNorm,
  // rope, optionally Hadamard + FP8 rounding, and the cache write in one fused op.
  cache.write_index_key(be_, layer, k_proj, a.idx_k_norm_w, a.idx_k_norm_b, 1e-6f, cfg_.qk_rope_head_dim,
                        st.ab.pos_of_token, rope_, opts_.indexer == IndexerMode::Fp8, st.slots);
}

Tensor Model::indexer_weights(const AttentionWeights& a, const Tensor& h) const {
  const int64_t Hi = cfg_.index_n_heads, Di = cfg_.index_head_dim;
  Tensor w = be_.linear(h, a.idx_weights_proj);
  be_.scale_inplace(w, float(1.0 / std::sqrt(double(Hi)) / std::sqrt(double(Di))));
  return w;
}

void Model::indexer_query(const Step& st, Tensor& q_proj) const {
  const int64_t Hi = cfg_.index_n_heads, Di = cfg_.index_head_dim, Dr = cfg_.qk_rope_head_dim;
  be_.rope(q_proj, 0, Di, Hi, Dr, st.ab.pos_of_token, rope_, RopeLayout::HalfSplit);
  if (opts_.indexer == IndexerMode::Fp8) be_.hadamard_fp8_round(q_proj, Di);
}

Tensor Model::indexer_topk(int64_t layer, const Step& st, KVCache& cache, const Tensor& q_proj,
                           const Tensor& weights) const {
  const int64_t Hi = cfg_.index_n_heads, Di = cfg_.index_head_dim;
  return be_.indexer_topk(q_proj, weights, cache.index_k[layer], st.ab, Hi, Di, cfg_.index_topk,
                          opts_.indexer == IndexerMode::Fp8);
}

Tensor Model::ffn(const FfnWeights& f, const Tensor& h) const {
  auto mlp = [&](const backend::ExpertWeights& e) {
    std::vector<Tensor> gate_up = be_.linear_group(h, {&e.gate, &e.up});
    return be_.linear(be_.silu_mul(gate_up[0], gate_up[1]), e.down);
  };
  if (!f.moe) return mlp(f.dense);
  backend::MoeRouting r{int(cfg_.n_group), int(cfg_.topk_group), int(cfg_.num_experts_per_tok), cfg_.norm_topk_prob,
                        float(cfg_.routed_scaling_factor)};
  Tensor ids, weights;
  be_.moe_route(be_.linear(h, f.router), f.router_bias, r, &ids, &weights);
  // Expert parallel: this rank computes its experts' share only; the others' ids become -1 (skipped).
  if (tp_.expert_parallel) be_.moe_local_ids(ids, int32_t(f.expert_begin), int32_t(f.experts->size()));
  return be_.moe_ffn(h, ids, weights, *f.experts, cfg_.n_shared_experts > 0 ? &f.dense : nullptr);
}

}  // namespace ds::model
