#include "model/step_graphs.h"

#include <algorithm>

#include "model/step.h"
#include "util/error.h"
#include "util/log.h"
#include "util/timer.h"

namespace ds::model {

struct StepGraphs::Padded {
  Model::Step st;
  int32_t real = 0, batch = 0, context = 0;
};

StepGraphs::StepGraphs(const Model& m, int32_t max_bs) : m_(m), max_bs_(max_bs) {
  DS_CHECK(max_bs >= 1, "cuda graph max batch size must be >= 1, got {}", max_bs);
}
StepGraphs::~StepGraphs() = default;

int32_t StepGraphs::batch_bucket(int32_t n, int32_t max_bs) {
  DS_CHECK(n >= 1 && n <= max_bs, "batch of {} outside [1, {}]", n, max_bs);
  int32_t b = 1;
  if (n <= 8) {
    while (b < n) b *= 2;
  } else {
    const int32_t step = n <= 64 ? 8 : n <= 256 ? 16 : 32;
    b = (n + step - 1) / step * step;
  }
  return std::min(b, max_bs);
}

int32_t StepGraphs::context_bucket(int32_t ctx, int32_t max_positions) {
  int64_t c = 256;
  while (c < ctx) c *= 2;
  if (max_positions > 0 && ctx <= max_positions && c > max_positions) c = max_positions;
  return int32_t(c);
}

bool StepGraphs::eligible(const ForwardBatch& batch) const {
  if (batch.want_hidden || batch.seqs.empty() || int64_t(batch.seqs.size()) > max_bs_) return false;
  if (m_.opts_.attention != AttentionForm::Absorbed) return false;  // the expanded form uploads per step
  for (const auto& sc : batch.seqs)
    if (sc.tokens.size() != 1 || sc.logits != LogitsMode::Last) return false;
  return true;
}

StepGraphs::Padded StepGraphs::pad(const ForwardBatch& batch, const KVCache& cache) const {
  Padded p;
  p.st = m_.make_step(batch, cache);
  Model::Step& st = p.st;
  p.real = int32_t(batch.seqs.size());
  p.batch = batch_bucket(p.real, max_bs_);
  p.context = context_bucket(*std::max_element(st.ctx.begin(), st.ctx.end()),
                             int32_t(std::min<int64_t>(m_.config().max_position_embeddings, INT32_MAX)));
  for (int32_t s = p.real; s < p.batch; ++s) {  // token 0 at position 0 of page 0, written nowhere
    const int32_t t = int32_t(st.ids.size());
    st.ab.page_tables.push_back({0});
    st.ab.seq_of_token.push_back(s);
    st.ab.pos_of_token.push_back(0);
    st.ids.push_back(0);
    st.slots.push_back(-1);
    st.token0.push_back(t);
    st.ctx.push_back(1);
    st.logits_row0.push_back(int32_t(st.logit_rows.size()));
    st.logit_rows.push_back(t);
  }
  st.ab.max_context = p.context;
  return p;
}

namespace {
// The real sequences' rows of a padded step's logits.
ForwardOutput real_rows(backend::Backend& be, const std::vector<int32_t>& row0, int32_t real, const Tensor& logits,
                        bool on_device) {
  ForwardOutput out;
  out.logits_row0.assign(row0.begin(), row0.begin() + real);
  Tensor rows = logits.rows(0, real);
  out.logits = on_device ? rows : be.to_host_f32(rows);
  return out;
}
}  // namespace

ForwardOutput StepGraphs::run_eager(const Padded& p, const ForwardBatch& batch, KVCache& cache) {
  StepBinding bound(m_.be_, p.st);
  Tensor logits = m_.head_logits(p.st, m_.main_stack(p.st, cache), m_.w_.lm_head);
  return real_rows(m_.be_, p.st.logits_row0, p.real, logits, batch.logits_on_device);
}

ForwardOutput StepGraphs::forward_padded_eager(const ForwardBatch& batch, KVCache& cache) {
  DS_CHECK(eligible(batch), "forward_padded_eager: not a decode step of at most {} sequences", max_bs_);
  return run_eager(pad(batch, cache), batch, cache);
}

std::optional<ForwardOutput> StepGraphs::forward(const ForwardBatch& batch, KVCache& cache) {
  if (!eligible(batch)) return std::nullopt;
  const void* pools = cache.latent.empty() ? nullptr : cache.latent[0].raw();
  if (pools != cache_id_) {  // other KV pools: the recordings write the old ones
    graphs_.clear();
    cache_id_ = pools;
  }
  Padded p = pad(batch, cache);
  const auto key = std::make_pair(p.batch, p.context);
  auto it = graphs_.find(key);
  if (it == graphs_.end()) {
    // The first step of this shape runs op by op (that result is this step's), then it is recorded.
    ForwardOutput out = run_eager(p, batch, cache);
    Timer timer;
    const int32_t pages = (p.context + cache.page_size - 1) / cache.page_size;
    auto g = m_.be_.capture(p.st.index(), pages, [&] {
      return m_.head_logits(p.st, m_.main_stack(p.st, cache), m_.w_.lm_head);
    });
    if (g) {
      ++stats_.captured;
      spdlog::info("CUDA graph: recorded the decode step of batch {} (contexts up to {}) in {:.0f} ms; {} recorded",
                   p.batch, p.context, timer.seconds() * 1e3, stats_.captured);
    } else {
      ++stats_.failed;
    }
    graphs_.emplace(key, std::move(g));
    return out;
  }
  if (!it->second) return std::nullopt;
  Tensor logits = m_.be_.replay(*it->second, p.st.index());
  ++stats_.replayed;
  return real_rows(m_.be_, p.st.logits_row0, p.real, logits, batch.logits_on_device);
}

}  // namespace ds::model
