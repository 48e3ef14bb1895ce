#include "runtime/step_recorder.h"

#include <algorithm>

#include "model/step.h"
#include "util/error.h"
#include "util/log.h"
#include "util/timer.h"

namespace ds::runtime {

using model::ForwardBatch;
using model::ForwardOutput;
using model::KVCache;
using model::StepLayout;

struct StepRecorder::Padded {
  StepLayout st;
  ForwardMode mode = ForwardMode::Decode;
  int32_t q = 1;  // tokens per sequence
  int32_t real = 0, batch = 0, context = 0;
  // pad_verify_like: the padded rows that hold each real logits row, and each real token's row.
  std::vector<int32_t> logit_rows, token_rows;
  Key key() const { return {mode, q, batch, context}; }
};

StepRecorder::StepRecorder(const model::Model& m, int32_t max_bs, bool lazy, const Tensor* hidden)
    : m_(m), max_bs_(max_bs), lazy_(lazy), hidden_(hidden) {
  DS_CHECK(max_bs >= 1, "cuda graph max batch size must be >= 1, got {}", max_bs);
}
StepRecorder::~StepRecorder() = default;

int32_t StepRecorder::batch_bucket(int32_t n, int32_t max_bs) {
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

int32_t StepRecorder::context_bucket(int32_t ctx, int32_t max_positions) {
  int64_t c = 256;
  while (c < ctx) c *= 2;
  if (max_positions > 0 && ctx <= max_positions && c > max_positions) c = max_positions;
  return int32_t(c);
}

bool StepRecorder::eligible(ForwardMode mode, const ForwardBatch& batch) const {
  // (The expanded attention form uploads per step: never recorded.)
  if (m_.options().attention != model::AttentionForm::Absorbed) return false;
  if (batch.want_hidden) {  // the padded step's rows must fit the hidden buffer
    if (!hidden_ || batch.seqs.empty() || int64_t(batch.seqs.size()) > max_bs_) return false;
    const int64_t q = int64_t(batch.seqs[0].tokens.size());
    if (int64_t(batch_bucket(int32_t(batch.seqs.size()), max_bs_)) * q > hidden_->dim(0)) return false;
  }
  if (!batch.dp_tokens.empty()) {  // DP attention: the engine decided for every group at once
    if (batch.dp_decode_bs < 1 || batch.dp_decode_bs > max_bs_) return false;
    if (batch.dp_verify_q > 1) {  // a verify step somewhere: every group pads to its rows
      if (batch.dp_verify_q != verify_q_) return false;
      return batch.seqs.empty() || (int32_t(batch.seqs.size()) <= batch.dp_decode_bs &&
                                    verify_like_rows(batch, verify_q_));
    }
    return batch.seqs.empty() || (int32_t(batch.seqs.size()) <= batch.dp_decode_bs &&
                                  uniform_tokens_per_seq(ForwardMode::Decode, batch) == 1);
  }
  if (batch.seqs.empty() || int64_t(batch.seqs.size()) > max_bs_) return false;
  return uniform_tokens_per_seq(mode, batch) > 0 || verify_like(batch);
}

int32_t StepRecorder::max_positions(const model::Model& m) {
  return int32_t(std::min<int64_t>(m.config().max_position_embeddings, INT32_MAX));
}

std::vector<int32_t> StepRecorder::batch_buckets(int32_t max_batch, int32_t max_bs) {
  std::vector<int32_t> batches;
  const int32_t top = std::min(max_bs, std::max(1, max_batch));
  for (int32_t n = 1; n <= top; ++n) {
    const int32_t b = batch_bucket(n, max_bs);
    if (batches.empty() || batches.back() != b) batches.push_back(b);
  }
  return batches;
}

std::vector<int32_t> StepRecorder::context_buckets(int32_t max_context, const model::Model& m) {
  std::vector<int32_t> contexts;
  const int32_t mp = max_positions(m), last = context_bucket(std::max(1, max_context), mp);
  for (int32_t c = context_bucket(1, mp);; c = context_bucket(c + 1, mp)) {
    contexts.push_back(c);
    if (c >= last) break;
  }
  return contexts;
}

bool StepRecorder::pools_changed(const KVCache& cache, const void*& id) {
  const void* pools = cache.latent.empty() ? nullptr : cache.latent[0].raw();
  if (pools == id) return false;
  id = pools;
  return true;
}

void StepRecorder::add_padding(StepLayout& st, int32_t s, int32_t q, bool all_logits) {
  const int32_t t0 = int32_t(st.ids.size());
  st.ab.page_tables.push_back({0});
  st.token0.push_back(t0);
  st.ctx.push_back(q);
  st.logits_row0.push_back(int32_t(st.logit_rows.size()));
  for (int32_t i = 0; i < q; ++i) {
    st.ab.seq_of_token.push_back(s);
    st.ab.pos_of_token.push_back(i);
    st.ids.push_back(0);
    st.slots.push_back(-1);
    if (all_logits || i == q - 1) st.logit_rows.push_back(t0 + i);
  }
}

namespace {

// The real sequences' rows of a padded step's logits (each real sequence has q rows for verify, 1 else).
ForwardOutput real_rows(backend::Backend& be, const std::vector<int32_t>& row0, int32_t real, int32_t rows_per_seq,
                        const Tensor& logits, bool on_device) {
  ForwardOutput out;
  out.logits_row0.assign(row0.begin(), row0.begin() + real);
  Tensor rows = logits.rows(0, int64_t(real) * rows_per_seq);
  out.logits = on_device ? rows : be.to_host_f32(rows);
  return out;
}
}  // namespace

bool StepRecorder::verify_like(const ForwardBatch& batch) const {
  if (verify_q_ < 2 || batch.seqs.empty() || int64_t(batch.seqs.size()) > max_bs_ || !batch.dp_tokens.empty())
    return false;
  if (batch.want_hidden &&
      (!hidden_ || int64_t(batch_bucket(int32_t(batch.seqs.size()), max_bs_)) * verify_q_ > hidden_->dim(0)))
    return false;
  return verify_like_rows(batch, verify_q_);
}

StepRecorder::Padded StepRecorder::pad_verify_like(const ForwardBatch& batch, const KVCache& cache,
                                                   int32_t bucket) const {
  const StepLayout real = m_.layout(batch, cache);
  Padded p;
  p.mode = ForwardMode::TargetVerify;
  p.q = verify_q_;
  p.real = int32_t(batch.seqs.size());
  p.batch = bucket;
  StepLayout& st = p.st;
  st.ab.page_size = real.ab.page_size;
  st.ab.page_tables = real.ab.page_tables;
  st.ctx = real.ctx;
  st.dp_tokens = real.dp_tokens;
  for (int32_t s = 0; s < p.real; ++s) {
    const int32_t n = int32_t(batch.seqs[size_t(s)].tokens.size()), t0 = real.token0[size_t(s)];
    const int32_t row0 = int32_t(st.ids.size());
    st.token0.push_back(row0);
    st.logits_row0.push_back(int32_t(st.logit_rows.size()));
    for (int32_t i = 0; i < p.q; ++i) {
      const int32_t t = t0 + std::min(i, n - 1);  // rows beyond the sequence's own repeat its last position
      st.ids.push_back(i < n ? real.ids[size_t(t)] : 0);
      st.slots.push_back(i < n ? real.slots[size_t(t)] : -1);
      st.ab.seq_of_token.push_back(s);
      st.ab.pos_of_token.push_back(real.ab.pos_of_token[size_t(t)]);
      st.logit_rows.push_back(row0 + i);
      if (i < n) p.token_rows.push_back(row0 + i);
    }
    const int32_t rows = batch.seqs[size_t(s)].logits == model::LogitsMode::All ? n : 1;
    for (int32_t i = 0; i < rows; ++i) p.logit_rows.push_back(row0 + i);
  }
  p.context = context_bucket(*std::max_element(st.ctx.begin(), st.ctx.end()), max_positions(m_));
  for (int32_t s = p.real; s < p.batch; ++s) add_padding(st, s, p.q, true);
  st.ab.max_context = p.context;
  return p;
}

ForwardOutput StepRecorder::real_output(const Padded& p, const ForwardBatch& batch, const Tensor& logits) const {
  backend::Backend& be = m_.backend();
  if (p.logit_rows.empty()) {  // a uniform step: the real sequences' rows come first
    const int32_t rows = p.mode == ForwardMode::TargetVerify ? p.q : 1;
    ForwardOutput out = real_rows(be, p.st.logits_row0, p.real, rows, logits, batch.logits_on_device);
    add_hidden(out, batch);
    return out;
  }
  ForwardOutput out;
  int32_t row = 0;
  for (const auto& sc : batch.seqs) {
    out.logits_row0.push_back(row);
    row += sc.logits == model::LogitsMode::All ? int32_t(sc.tokens.size()) : 1;
  }
  Tensor picked = be.cache_gather(logits, p.logit_rows);  // F32 [real rows, vocab]
  out.logits = batch.logits_on_device ? picked : be.to_host_f32(picked);
  if (batch.want_hidden) {
    Tensor h = be.cache_gather(*hidden_, p.token_rows);
    out.hidden = batch.hidden_on_device ? h : be.to_host_f32(h);
  }
  return out;
}

StepRecorder::Padded StepRecorder::pad(ForwardMode mode, const ForwardBatch& batch, const KVCache& cache) const {
  if (!batch.dp_tokens.empty()) {
    // DP attention: every group pads to the bucket of the largest group's batch (an idle group is all
    // padding), and to the verify rows when some group verifies, so every rank's exchanges carry the same
    // rows, recorded or not.
    const int32_t b = batch_bucket(batch.dp_decode_bs, max_bs_);
    const bool verify = batch.dp_verify_q > 1;
    const int32_t q = verify ? verify_q_ : 1;
    if (batch.seqs.empty())
      return synthetic(verify ? ForwardMode::TargetVerify : ForwardMode::Decode, q, b,
                       context_bucket(1, max_positions(m_)), cache.page_size);
    ForwardBatch own = batch;
    own.dp_tokens.clear();
    Padded p = verify ? pad_verify_like(own, cache, b) : pad(ForwardMode::Decode, own, cache, b);
    p.st.dp_tokens.assign(batch.dp_tokens.size(), b * q);
    return p;
  }
  if (uniform_tokens_per_seq(mode, batch) == 0 && verify_like(batch))
    return pad_verify_like(batch, cache, batch_bucket(int32_t(batch.seqs.size()), max_bs_));
  return pad(mode, batch, cache, batch_bucket(int32_t(batch.seqs.size()), max_bs_));
}

StepRecorder::Padded StepRecorder::pad(ForwardMode mode, const ForwardBatch& batch, const KVCache& cache,
                                       int32_t bucket) const {
  Padded p;
  p.st = m_.layout(batch, cache);
  p.mode = mode;
  p.q = uniform_tokens_per_seq(mode, batch);
  p.real = int32_t(batch.seqs.size());
  p.batch = bucket;
  p.context = context_bucket(*std::max_element(p.st.ctx.begin(), p.st.ctx.end()), max_positions(m_));
  for (int32_t s = p.real; s < p.batch; ++s) add_padding(p.st, s, p.q, mode == ForwardMode::TargetVerify);
  p.st.ab.max_context = p.context;
  return p;
}

StepRecorder::Padded StepRecorder::synthetic(ForwardMode mode, int32_t q, int32_t batch, int32_t context,
                                             int32_t page_size) const {
  Padded p;
  p.mode = mode;
  p.q = q;
  p.batch = batch;
  p.context = context;
  p.st.ab.page_size = page_size;
  for (int32_t s = 0; s < batch; ++s) add_padding(p.st, s, q, mode == ForwardMode::TargetVerify);
  p.st.ab.max_context = context;
  const model::TensorParallel& tp = m_.tensor_parallel();
  if (tp.dp_attention()) p.st.dp_tokens.assign(size_t(tp.dp), batch * q);  // every group padded alike
  return p;
}

Tensor StepRecorder::logits_of(const Padded& p, KVCache& cache) const {
  // A padded step bigger than the hidden buffer (start-up recording of a large bucket) keeps no hidden
  // states: a step that wants them is never padded to it (eligible()).
  Tensor* hidden = hidden_ && int64_t(p.st.ids.size()) <= hidden_->dim(0) ? const_cast<Tensor*>(hidden_) : nullptr;
  return m_.step_logits(p.st, cache, hidden);
}

void StepRecorder::add_hidden(ForwardOutput& out, const ForwardBatch& batch) const {
  if (!batch.want_hidden) return;
  int64_t tokens = 0;
  for (const auto& sc : batch.seqs) tokens += int64_t(sc.tokens.size());
  out.hidden = batch.hidden_on_device ? hidden_->rows(0, tokens) : m_.backend().to_host_f32(hidden_->rows(0, tokens));
}

ForwardOutput StepRecorder::run_eager(const Padded& p, const ForwardBatch& batch, KVCache& cache) {
  model::StepBinding bound(m_.backend(), p.st);
  Tensor logits = logits_of(p, cache);
  return real_output(p, batch, logits);
}

ForwardOutput StepRecorder::forward_padded_eager(ForwardMode mode, const ForwardBatch& batch, KVCache& cache) {
  DS_CHECK(eligible(mode, batch), "forward_padded_eager: not a uniform {} step of at most {} sequences",
           forward_mode_name(mode), max_bs_);
  const Padded p = pad(mode, batch, cache);
  // A replay takes only the recording's shape (the CUDA backend refuses another): checked here, where
  // nothing replays (the CPU tests), against the synthetic step the recording is made of.
  p.st.check_replays_as(synthetic(p.mode, p.q, p.batch, p.context, cache.page_size).st,
                        fmt::format("step recorder: a padded {} step", forward_mode_name(p.mode)).c_str());
  if (!batch.dp_tokens.empty() && p.mode == ForwardMode::TargetVerify && !batch.seqs.empty() &&
      stats_.padded_dp_verify++ == 0)  // the e2e tests look for this line
    spdlog::info("a verify step ran padded under DP attention: {} sequence(s) of this group in {} x {} rows",
                 p.real, p.batch, p.q);
  return run_eager(p, batch, cache);
}

void StepRecorder::record(const Padded& p, KVCache& cache) {
  Timer timer;
  const int32_t pages = (p.context + cache.page_size - 1) / cache.page_size;
  auto g = m_.backend().capture(p.st.index(), pages, [&] { return logits_of(p, cache); });
  if (g) {
    ++stats_.captured;
    // Lazily: one line per recording, as they come during serving; at start-up the progress line says it.
    spdlog::log(lazy_ ? spdlog::level::info : spdlog::level::debug,
                "CUDA graph: recorded the {} step of batch {} x {} token(s) (contexts up to {}) in {:.0f} ms; {} recorded",
                forward_mode_name(p.mode), p.batch, p.q, p.context, timer.seconds() * 1e3, stats_.captured);
  } else {
    ++stats_.failed;
  }
  graphs_[p.key()] = std::move(g);
}

void StepRecorder::follow_pools(const KVCache& cache) {
  if (pools_changed(cache, cache_id_)) graphs_.clear();  // other KV pools: the recordings write the old ones
}

int StepRecorder::record_all(ForwardMode mode, int32_t tokens_per_seq, int32_t max_batch, int32_t max_context,
                             KVCache& cache, const std::function<void(int, int)>& progress) {
  DS_CHECK(mode == ForwardMode::Decode || mode == ForwardMode::TargetVerify,
           "only decode and verify steps are recorded, not {}", forward_mode_name(mode));
  DS_CHECK(tokens_per_seq >= 1 && (mode != ForwardMode::Decode || tokens_per_seq == 1),
           "{} steps of {} tokens per sequence cannot be recorded", forward_mode_name(mode), tokens_per_seq);
  if (!m_.backend().can_capture() || m_.options().attention != model::AttentionForm::Absorbed) return 0;
  follow_pools(cache);
  const std::vector<int32_t> batches = batch_buckets(max_batch, max_bs_), contexts = context_buckets(max_context, m_);
  const int total = int(batches.size() * contexts.size());
  int done = 0;
  const int64_t before = stats_.captured;
  for (int32_t c : contexts)
    for (int32_t b : batches) {
      Padded p = synthetic(mode, tokens_per_seq, b, c, cache.page_size);
      if (!graphs_.count(p.key())) {
        // Op by op first, as a lazy recording's first step is: whatever an op sets up at its first use of
        // a shape (GEMM plans, workspaces, uploads) must exist before a capture, which may not upload. The
        // synthetic step is all padding: it writes nothing.
        {
          model::StepBinding bound(m_.backend(), p.st);
          logits_of(p, cache);
        }
        record(p, cache);
      }
      if (progress) progress(++done, total);
    }
  return int(stats_.captured - before);
}

std::optional<ForwardOutput> StepRecorder::forward(ForwardMode mode, const ForwardBatch& batch, KVCache& cache) {
  if (!eligible(mode, batch)) return std::nullopt;
  follow_pools(cache);
  Padded p = pad(mode, batch, cache);
  auto it = graphs_.find(p.key());
  // Under DP attention a step the engine declared uniform runs padded whatever happens here: the other
  // groups' ranks exchange padded rows with this one.
  const bool dp = !batch.dp_tokens.empty();
  if (it == graphs_.end()) {
    if (!lazy_) {
      ++stats_.unrecorded;
      if (dp) return run_eager(p, batch, cache);
      return std::nullopt;
    }
    // The first step of this shape runs op by op (that result is this step's), then it is recorded.
    ForwardOutput out = run_eager(p, batch, cache);
    record(p, cache);
    return out;
  }
  if (!it->second) return dp ? std::optional<ForwardOutput>(run_eager(p, batch, cache)) : std::nullopt;
  Tensor logits = m_.backend().replay(*it->second, p.st.index());
  ++stats_.replayed;
  return real_output(p, batch, logits);
}

}  // namespace ds::runtime
