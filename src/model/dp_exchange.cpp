// DP attention's FFN exchange (SGLang's --enable-dp-attention): every DP group attends over its own
// requests, but the MoE (and, unless --moe-dense-tp-size 1, the dense MLP) is cut over all ranks, so each
// such layer gathers the tokens of every group, runs this rank's slices or experts on all of them, and
// hands each rank back the summed rows of its own tokens:
//
//   all-gather [M, H] from every rank -> [ranks * M, H] -> FFN (partial) -> reduce-scatter -> [M, H]
//
// Inside a group of a ranks, rank j brings rows [T j / a, T (j + 1) / a) of the group's T tokens (every
// token enters once) and the group's ranks all-gather their parts back afterwards. M is the largest part
// of any rank this step (ForwardBatch::dp_tokens gives every group's T); shorter parts are padded with
// zero rows, whose results are dropped. Reduce-scatter sums in the all-reduce's order, so a token's output
// has the bits the tensor-parallel path would give it (up to the GEMMs' batch-size dependence).
#include "dist/group.h"
#include "model/model.h"
#include "util/error.h"

namespace ds::model {

void Model::check_dp_tokens(const std::vector<int32_t>& dp_tokens, size_t tokens) const {
  if (!tp_.dp_attention()) {
    DS_CHECK(dp_tokens.empty(), "forward: DP token counts given to a model without DP attention");
    return;
  }
  DS_CHECK(int(dp_tokens.size()) == tp_.dp, "forward: DP attention step with {} groups' token counts for --dp {}",
           dp_tokens.size(), tp_.dp);
  for (int32_t t : dp_tokens) DS_CHECK(t >= 0, "forward: negative DP group token count {}", t);
  DS_CHECK(size_t(dp_tokens[size_t(tp_.dp_rank())]) == tokens,
           "forward: DP group {} brings {} tokens but the step's counts say {}", tp_.dp_rank(), tokens,
           dp_tokens[size_t(tp_.dp_rank())]);
}

Tensor Model::ffn_across_dp(const FfnWeights& f, const Tensor* h, const std::vector<int32_t>& dp_tokens) const {
  const int a = tp_.attn_size();
  const int64_t H = cfg_.hidden_size;
  auto part = [&](int g, int j) {
    const int64_t T = dp_tokens[size_t(g)];
    return std::pair<int64_t, int64_t>{T * j / a, T * (j + 1) / a};
  };
  int64_t M = 0;
  for (int g = 0; g < tp_.dp; ++g)
    for (int j = 0; j < a; ++j) M = std::max(M, part(g, j).second - part(g, j).first);
  if (M == 0) return Tensor();  // no group has tokens: nothing to exchange (every rank sees the same counts)
  const DType dt = be_.act_dtype();
  const auto [b, e] = part(tp_.dp_rank(), tp_.attn_rank());
  Tensor send = be_.alloc({M, H}, dt);  // zero-filled: padding rows
  if (e > b) {
    Tensor dst = send.rows(0, e - b);
    be_.copy_cols(dst, 0, h->rows(b, e), 0, H);
  }
  Tensor all = be_.alloc({int64_t(tp_.size) * M, H}, dt);
  tp_.group->all_gather(send, all);
  Tensor y_all = ffn(f, all);  // this rank's slices / experts of every group's tokens
  Tensor mine = be_.alloc({M, H}, y_all.dtype());
  tp_.group->reduce_scatter_sum(y_all, mine);
  if (!h) return Tensor();
  const int64_t T = h->dim(0);
  if (a == 1) return mine.rows(0, T);
  Tensor parts = be_.alloc({int64_t(a) * M, H}, mine.dtype());
  tp_.attn_group->all_gather(mine, parts);
  Tensor out = be_.alloc({T, H}, mine.dtype());
  for (int j = 0; j < a; ++j) {
    const auto [bj, ej] = part(tp_.dp_rank(), j);
    if (ej == bj) continue;
    Tensor dst = out.rows(bj, ej);
    be_.copy_cols(dst, 0, parts.rows(int64_t(j) * M, int64_t(j) * M + (ej - bj)), 0, H);
  }
  return out;
}

void Model::idle_step(const std::vector<int32_t>& dp_tokens, int mtp_depth) const {
  check_dp_tokens(dp_tokens, 0);
  if (mtp_depth >= 0) {
    const FfnWeights& f = w_.mtp[size_t(mtp_depth)].layer.ffn;
    if (tp_.ffn_across_dp(f.moe)) ffn_across_dp(f, nullptr, dp_tokens);
    return;
  }
  for (const LayerWeights& lw : w_.layers)
    if (tp_.ffn_across_dp(lw.ffn.moe)) ffn_across_dp(lw.ffn, nullptr, dp_tokens);
}

}  // namespace ds::model
