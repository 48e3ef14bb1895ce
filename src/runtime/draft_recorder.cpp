#include "runtime/draft_recorder.h"

#include <algorithm>

#include "runtime/step_recorder.h"
#include "util/error.h"
#include "util/log.h"
#include "util/timer.h"

namespace ds::runtime {

using model::ForwardBatch;
using model::KVCache;
using model::StepLayout;


DraftRecorder::DraftRecorder(const model::Model& m, int32_t max_bs, int32_t steps, bool record, bool lazy)
    : m_(m), max_bs_(max_bs), steps_(steps), record_(record), lazy_(lazy) {
  DS_CHECK(max_bs >= 1 && steps >= 1 && m.has_mtp(), "draft recorder: batch {}, {} draft steps, MTP layer: {}",
           max_bs, steps, m.has_mtp());
  backend::Backend& be = m.backend();
  const int64_t H = m.config().hidden_size;
  in_hidden_ = be.alloc({int64_t(max_bs) * (steps + 1), H}, DType::F32);
  hidden_ = be.alloc({max_bs, H}, DType::F32);
  ids_ = be.alloc({max_bs}, DType::I32);
  drafts_ = be.alloc({max_bs, steps}, DType::I32);
  if (m.tensor_parallel().dp_attention()) zeros_ = be.from_host(Tensor::zeros({max_bs, H}, DType::F32));
}
DraftRecorder::~DraftRecorder() = default;

DraftRecorder::Split DraftRecorder::split(const StepInput& in) const {
  // Sequences that do not draft (prompt chunks before the last, no draft budget) and the first n - (S + 1)
  // tokens of a drafting one that brings more (its prompt's last chunk) only fill the MTP layer's KV: an
  // op-by-op pass first. What is left — every drafting sequence's last <= S + 1 tokens — is recorded.
  Split sp{split_draft_step(in, size_t(steps_) + 1)};
  // The KV-only part through the Fill pass when each of its sequences brings one token (decode steps of
  // requests that do not draft now: speculation paused, no budget, no speculation).
  sp.fill_pass = fill_pass_fits(sp);
  if (sp.drafting.seqs.empty() ? !sp.fill_pass : int64_t(sp.drafting.seqs.size()) > max_bs_) return Split{};
  sp.ok = true;
  return sp;
}

void DraftRecorder::finish(Layout& l, int32_t real, int32_t q) const {
  // Padding sequences as the step recorder's (their last row's logits computed and dropped).
  for (int32_t s = real; s < l.batch; ++s) StepRecorder::add_padding(l.st, s, q, false);
  const int32_t longest = l.st.ctx.empty() ? 1 : *std::max_element(l.st.ctx.begin(), l.st.ctx.end());
  if (l.context == 0) l.context = StepRecorder::context_bucket(longest, StepRecorder::max_positions(m_));
  l.st.ab.max_context = l.context;
}

DraftRecorder::Layout DraftRecorder::confirmed_layout(const ForwardBatch& b, const KVCache& cache,
                                                   int32_t bucket) const {
  // Each sequence's confirmed tokens, then padding rows up to S + 1 (their positions follow; the pages
  // reserved for the next verify step cover them; they write nothing). The pass computes no logits, but each
  // sequence keeps one logits row (its last confirmed token), as the padding sequences of the recorded
  // layout do: a replay needs the layout's shape to be the recording's.
  const int32_t q = steps_ + 1;
  ForwardBatch padded;
  padded.seqs = b.seqs;
  for (auto& sc : padded.seqs) {
    sc.tokens.resize(size_t(q), 0);
    sc.logits = model::LogitsMode::None;
  }
  Layout l;
  l.pass = Pass::Confirmed;
  l.batch = bucket;
  l.st = m_.layout(padded, cache);
  for (size_t s = 0; s < b.seqs.size(); ++s) {
    const int32_t n = int32_t(b.seqs[s].tokens.size()), t0 = l.st.token0[s];
    for (int32_t i = n; i < q; ++i) l.st.slots[size_t(t0 + i)] = -1;
    l.st.logits_row0[s] = int32_t(s);
    l.st.logit_rows.push_back(t0 + n - 1);
  }
  finish(l, int32_t(b.seqs.size()), q);
  return l;
}

DraftRecorder::Layout DraftRecorder::chain_layout(const ForwardBatch& b, const std::vector<int32_t>& confirmed,
                                                  int32_t j, const KVCache& cache, int32_t bucket) const {
  // Pass j (0..S-1) of sequence s: one token through the whole layer at the position after the previous
  // pass's, the first at the last confirmed position (its id is on the device, in ids_: the layout's own
  // id is a placeholder).
  ForwardBatch chain;
  for (size_t s = 0; s < b.seqs.size(); ++s) {
    model::SequenceChunk c;
    c.tokens = {0};
    c.start_pos = b.seqs[s].start_pos + confirmed[s] - 1 + j;
    c.page_table = b.seqs[s].page_table;
    c.logits = model::LogitsMode::Last;
    chain.seqs.push_back(std::move(c));
  }
  return one_token_layout(Pass::Chain, chain, cache, bucket);
}

DraftRecorder::Layout DraftRecorder::one_token_layout(Pass pass, const ForwardBatch& b, const KVCache& cache,
                                                      int32_t bucket) const {
  Layout l;
  l.pass = pass;
  l.batch = bucket;
  l.st = m_.layout(b, cache);
  finish(l, int32_t(b.seqs.size()), 1);
  return l;
}

DraftRecorder::Layout DraftRecorder::synthetic(Pass pass, int32_t batch, int32_t context, int32_t page_size) const {
  Layout l;
  l.pass = pass;
  l.batch = batch;
  l.context = context;
  l.st.ab.page_size = page_size;
  finish(l, 0, pass == Pass::Confirmed ? steps_ + 1 : 1);
  const model::TensorParallel& tp = m_.tensor_parallel();
  if (pass == Pass::Chain && tp.dp_attention()) l.st.dp_tokens.assign(size_t(tp.dp), batch);  // run_dp's shape
  return l;
}

Tensor DraftRecorder::body(const Layout& l, KVCache& cache) {
  const int64_t T = int64_t(l.st.ids.size());
  Tensor ids = ids_.rows(0, l.batch);
  if (l.pass == Pass::Chain) return m_.mtp_draft_pass(l.st, cache, &ids, hidden_.rows(0, l.batch), ids_, hidden_);
  m_.mtp_fill_pass(l.st, cache, in_hidden_.rows(0, T));  // Confirmed and Fill: KV only
  return ids_.rows(0, 1);  // a capture returns a device tensor; these passes have no output
}

void DraftRecorder::check_replayable(const Layout& l) const {
  // A replay takes only a layout of the recording's shape (the CUDA backend refuses another); padded op by
  // op (tests on the CPU) nothing would notice, so the shape is checked here against the recording's.
  l.st.check_replays_as(synthetic(l.pass, l.batch, l.context, l.st.ab.page_size).st,
                        fmt::format("draft recorder: a {} pass", pass_name(l.pass)).c_str());
}

void DraftRecorder::pass(const Layout& l, KVCache& cache) {
  if (!record_) check_replayable(l);
  auto it = record_ ? graphs_.find({l.pass, l.batch, l.context}) : graphs_.end();
  if (record_ && it != graphs_.end() && it->second) {
    m_.backend().replay(*it->second, l.st.index());
    return;
  }
  {  // op by op: not recording, a capture that failed, or (lazily) a shape's first step
    model::StepBinding bound(m_.backend(), l.st);
    body(l, cache);
  }
  // A shape missing outside lazy mode (DP attention's padded passes: run_dp) runs op by op, unrecorded:
  // recordings are made at start-up, where every DP rank records the same shapes together.
  if (record_ && lazy_ && it == graphs_.end()) record(l, cache);
}

std::optional<std::vector<std::vector<int32_t>>> DraftRecorder::run(const StepInput& in, const Tensor& last_hidden,
                                                                     KVCache& cache) {
  if (!in.dp_drafting.empty()) return run_dp(in, last_hidden, cache);
  if (!last_hidden.defined()) return std::nullopt;
  const Split sp = split(in);
  if (!sp.ok) return std::nullopt;
  if (record_) follow_pools(cache);
  if (sp.drafting.seqs.empty()) {  // KV only (split: through the Fill pass)
    if (!run_fill(sp, last_hidden, cache)) return std::nullopt;
    return std::vector<std::vector<int32_t>>(in.batch.seqs.size());  // nobody drafts
  }
  const ForwardBatch& b = sp.drafting;
  const int32_t bucket = StepRecorder::batch_bucket(int32_t(b.seqs.size()), max_bs_);
  std::vector<Layout> passes;
  passes.push_back(confirmed_layout(b, cache, bucket));
  std::vector<int32_t> confirmed;
  for (const auto& sc : b.seqs) confirmed.push_back(int32_t(sc.tokens.size()));
  for (int32_t j = 0; j < steps_; ++j) passes.push_back(chain_layout(b, confirmed, j, cache, bucket));
  if (record_ && !lazy_)
    for (const Layout& l : passes) {
      auto it = graphs_.find({l.pass, l.batch, l.context});
      if (it == graphs_.end() || !it->second) return std::nullopt;  // op by op
    }

  backend::Backend& be = m_.backend();
  fill_kv(sp, last_hidden, cache);  // before the passes read it (other sequences' KV: it may run first)
  load_inputs(sp, confirmed, bucket, last_hidden);
  // The confirmed tokens' KV, then S passes of one token through the whole layer: only the last confirmed
  // token's output is read, so only it runs the attention, the MoE and the head (a 4-token MoE reads up to
  // 4x the experts of a 1-token one).
  pass(passes[0], cache);
  Tensor drafts = drafts_.rows(0, bucket);
  Tensor col = ids_.view({max_bs_, 1}).rows(0, bucket);
  for (int32_t j = 0; j < steps_; ++j) {
    pass(passes[size_t(1 + j)], cache);
    be.copy_cols(drafts, j, col, 0, 1);
  }
  ++(record_ ? stats_.recorded_steps : stats_.padded_eager);
  return read_drafts(sp, in.batch.seqs.size());
}

void DraftRecorder::load_inputs(const Split& sp, const std::vector<int32_t>& confirmed, int32_t bucket,
                                const Tensor& last_hidden) {
  // The kept hidden states in the confirmed pass's row order (a padding row reads any valid row), and the
  // first chain pass's inputs: each sequence's last confirmed token and hidden state.
  backend::Backend& be = m_.backend();
  const ForwardBatch& b = sp.drafting;
  const int32_t n = int32_t(b.seqs.size()), q = steps_ + 1;
  std::vector<int32_t> rows, last_rows;
  rows.reserve(size_t(bucket) * q);
  Tensor last_ids = Tensor::zeros({bucket, 1}, DType::I32);
  size_t at = 0;
  for (int32_t s = 0; s < bucket; ++s) {
    const int32_t got = s < n ? confirmed[size_t(s)] : 0;
    for (int32_t i = 0; i < q; ++i)
      rows.push_back(i < got ? sp.drafting_rows[at + size_t(i)] : sp.drafting_rows[0]);
    last_rows.push_back(got > 0 ? sp.drafting_rows[at + size_t(got) - 1] : sp.drafting_rows[0]);
    if (s < n) last_ids.data<int32_t>()[s] = b.seqs[size_t(s)].tokens.back();
    at += size_t(got);
  }
  for (int32_t r : rows)
    DS_CHECK(r >= 0 && r < last_hidden.dim(0), "draft step: hidden row {} of {}", r, last_hidden.dim(0));
  Tensor gathered = be.cache_gather(last_hidden, rows);
  Tensor dst = in_hidden_.rows(0, int64_t(rows.size()));
  be.copy_cols(dst, 0, gathered, 0, gathered.dim(1));
  Tensor last = be.cache_gather(last_hidden, last_rows);
  Tensor hid = hidden_.rows(0, bucket);
  be.copy_cols(hid, 0, last, 0, last.dim(1));
  Tensor col = ids_.view({max_bs_, 1}).rows(0, bucket);
  be.copy_cols(col, 0, be.from_host(last_ids), 0, 1);
}

std::vector<std::vector<int32_t>> DraftRecorder::read_drafts(const Split& sp, size_t seqs) {
  // One copy to the host (as floats from a device: token ids are exact below 2^24).
  backend::Backend& be = m_.backend();
  const int32_t n = int32_t(sp.drafting.seqs.size());
  std::vector<std::vector<int32_t>> out(seqs);  // sequences that do not draft: none
  if (n == 0) return out;
  const Tensor mine = drafts_.rows(0, n);
  const Tensor host = mine.device() == Device::CPU ? mine : be.to_host_f32(mine);
  for (int32_t s = 0; s < n; ++s)
    for (int32_t j = 0; j < steps_; ++j) {
      const int64_t k = int64_t(s) * steps_ + j;
      out[sp.index[size_t(s)]].push_back(host.dtype() == DType::I32 ? host.data<int32_t>()[k] : int32_t(host.f32()[k]));
    }
  return out;
}

std::optional<std::vector<std::vector<int32_t>>> DraftRecorder::run_dp(const StepInput& in, const Tensor& last_hidden,
                                                                        KVCache& cache) {
  // Every group reads the same dp_drafting: the same verdict and the same bucket everywhere.
  const int32_t most = *std::max_element(in.dp_drafting.begin(), in.dp_drafting.end());
  if (most == 0 || most > max_bs_) return std::nullopt;  // op by op (in every group)
  const int32_t bucket = StepRecorder::batch_bucket(most, max_bs_);
  if (record_) follow_pools(cache);
  backend::Backend& be = m_.backend();
  const model::TensorParallel& tp = m_.tensor_parallel();
  Split sp;
  if (!in.batch.seqs.empty()) {
    DS_CHECK(last_hidden.defined(), "a draft step needs the hidden states kept by the target step before it");
    static_cast<DraftSplit&>(sp) = split_draft_step(in, size_t(steps_) + 1);
    DS_CHECK(int32_t(sp.drafting.seqs.size()) <= most, "draft step: {} drafting sequences in a group, {} announced",
             sp.drafting.seqs.size(), most);
    sp.fill_pass = fill_pass_fits(sp);
    fill_kv(sp, last_hidden, cache);  // this group's own: no exchange
  }
  const ForwardBatch& b = sp.drafting;
  const int32_t n = int32_t(b.seqs.size());
  std::vector<int32_t> confirmed;
  for (const auto& sc : b.seqs) confirmed.push_back(int32_t(sc.tokens.size()));
  std::vector<Layout> chain;
  for (int32_t j = 0; j < steps_; ++j) {
    Layout l = n > 0 ? chain_layout(b, confirmed, j, cache, bucket)
                     : synthetic(Pass::Chain, bucket, StepRecorder::context_bucket(1, StepRecorder::max_positions(m_)),
                                 cache.page_size);
    l.st.dp_tokens.assign(size_t(tp.dp), bucket);  // every group's rows: the bucket
    chain.push_back(std::move(l));
  }
  if (n > 0) {
    load_inputs(sp, confirmed, bucket, last_hidden);
    pass(confirmed_layout(b, cache, bucket), cache);  // KV only: no exchange
  } else {  // all padding: finite rows (token 0, zero hidden states), written nowhere
    Tensor hid = hidden_.rows(0, bucket);
    be.copy_cols(hid, 0, zeros_.rows(0, bucket), 0, zeros_.dim(1));
    Tensor col = ids_.view({max_bs_, 1}).rows(0, bucket);
    be.copy_cols(col, 0, be.from_host(Tensor::zeros({bucket, 1}, DType::I32)), 0, 1);
  }
  Tensor drafts = drafts_.rows(0, bucket);
  Tensor col = ids_.view({max_bs_, 1}).rows(0, bucket);
  for (int32_t j = 0; j < steps_; ++j) {
    pass(chain[size_t(j)], cache);
    be.copy_cols(drafts, j, col, 0, 1);
  }
  if (!record_ && stats_.padded_eager == 0)  // the e2e tests look for this line
    spdlog::info("a draft step ran padded under DP attention: {} drafting sequence(s) of this group in {} rows", n,
                 bucket);
  ++(record_ ? stats_.recorded_steps : stats_.padded_eager);
  return read_drafts(sp, in.batch.seqs.size());
}

bool DraftRecorder::fill_pass_fits(const Split& sp) const {
  return !sp.fill.seqs.empty() && int64_t(sp.fill.seqs.size()) <= max_bs_ &&
         std::all_of(sp.fill.seqs.begin(), sp.fill.seqs.end(),
                     [](const model::SequenceChunk& sc) { return sc.tokens.size() == 1; });
}

void DraftRecorder::fill_kv(const Split& sp, const Tensor& last_hidden, KVCache& cache) {
  if (sp.fill.seqs.empty() || (sp.fill_pass && run_fill(sp, last_hidden, cache))) return;
  model::MtpInput mi;  // op by op
  mi.next_tokens = flat_tokens(sp.fill);
  mi.hidden = m_.backend().cache_gather(last_hidden, sp.fill_rows);
  m_.mtp_fill(sp.fill, mi, cache);
  ++stats_.with_fill;
}

bool DraftRecorder::run_fill(const Split& sp, const Tensor& last_hidden, KVCache& cache) {
  const int32_t n = int32_t(sp.fill.seqs.size()), bucket = StepRecorder::batch_bucket(n, max_bs_);
  // Its own positions. The pass computes no logits, but each sequence keeps one logits row, as the recorded
  // layout's padding sequences do: a replay takes only the recording's shape (session 22: without these
  // rows every Fill replay was refused, and the step with it failed on the GPU).
  ForwardBatch shaped = sp.fill;
  for (auto& sc : shaped.seqs) sc.logits = model::LogitsMode::Last;
  const Layout l = one_token_layout(Pass::Fill, shaped, cache, bucket);
  if (record_ && !lazy_) {
    auto it = graphs_.find({l.pass, l.batch, l.context});
    if (it == graphs_.end() || !it->second) return false;  // op by op
  }
  // Each sequence's kept hidden state in the pass's rows (a padding row reads any valid row).
  std::vector<int32_t> rows;
  for (int32_t s = 0; s < bucket; ++s) rows.push_back(sp.fill_rows[size_t(s < n ? s : 0)]);
  for (int32_t r : rows)
    DS_CHECK(r >= 0 && r < last_hidden.dim(0), "KV fill step: hidden row {} of {}", r, last_hidden.dim(0));
  backend::Backend& be = m_.backend();
  Tensor gathered = be.cache_gather(last_hidden, rows);
  Tensor dst = in_hidden_.rows(0, bucket);
  be.copy_cols(dst, 0, gathered, 0, gathered.dim(1));
  pass(l, cache);
  ++stats_.fill_steps;
  return true;
}

const char* DraftRecorder::pass_name(Pass p) {
  switch (p) {
    case Pass::Confirmed: return "confirmed KV";
    case Pass::Chain: return "draft chain";
    case Pass::Fill: return "MTP KV fill";
  }
  return "?";
}

void DraftRecorder::record(const Layout& l, KVCache& cache) {
  Timer timer;
  const int32_t pages = (l.context + cache.page_size - 1) / cache.page_size;
  auto g = m_.backend().capture(l.st.index(), pages, [&] { return body(l, cache); });
  if (g) ++stats_.captured;
  else ++stats_.failed;
  spdlog::debug("CUDA graph: {} pass of batch {} (contexts up to {}) {} in {:.0f} ms",
                pass_name(l.pass), l.batch, l.context, g ? "recorded" : "NOT recorded",
                timer.seconds() * 1e3);
  graphs_[{l.pass, l.batch, l.context}] = std::move(g);
}

void DraftRecorder::follow_pools(const KVCache& cache) {
  if (StepRecorder::pools_changed(cache, cache_id_)) graphs_.clear();
}

int DraftRecorder::record_all(int32_t max_batch, int32_t max_context, KVCache& cache,
                              const std::function<void(int, int)>& progress) {
  if (!record_ || lazy_ || !m_.backend().can_capture()) return 0;
  follow_pools(cache);
  const std::vector<int32_t> batches = StepRecorder::batch_buckets(max_batch, max_bs_),
                             contexts = StepRecorder::context_buckets(max_context, m_);
  const std::vector<Pass> kinds = {Pass::Confirmed, Pass::Chain, Pass::Fill};
  const int total = int(batches.size() * contexts.size() * kinds.size());
  int done = 0;
  const int64_t before = stats_.captured;
  for (int32_t c : contexts)
    for (int32_t b : batches)
      for (Pass k : kinds) {
        Layout l = synthetic(k, b, c, cache.page_size);
        if (!graphs_.count({k, b, c})) {
          {  // op by op first: whatever an op sets up at its first use of a shape must exist before a capture
            model::StepBinding bound(m_.backend(), l.st);
            body(l, cache);
          }
          record(l, cache);
        }
        if (progress) progress(++done, total);
      }
  return int(stats_.captured - before);
}

}  // namespace ds::runtime
