// DP attention on CPU ranks (SGLang's --tp N --dp D --enable-dp-attention): every DP group runs its own
// batch, attention inside the group, the MoE (and dense MLP unless kept in the group) over all ranks on
// every group's tokens. Each group's logits must match --tp 1 on that group's batch alone, also while
// another group is idle, through greedy decoding and the MTP layer.
#include <gtest/gtest.h>

#include <cstdio>

#include "backend/backend.h"
#include "dist/group.h"
#include "dist/local_group.h"
#include "golden_util.h"
#include "rank_threads.h"
#include "runtime/step_recorder.h"

using namespace ds;
using namespace ds::model;

namespace {
constexpr double kTolVsOneRank = 1e-5, kTolVsReference = 1e-4;

struct Layout {
  int tp, dp;
  bool ep, dense_local;
  int per_group() const { return tp / dp; }
  std::string name() const {
    return "tp" + std::to_string(tp) + "_dp" + std::to_string(dp) + (ep ? "_ep" : "") + (dense_local ? "_dense1" : "");
  }
};

// tp CPU ranks: one group over all of them, one per DP group of tp / dp consecutive ranks.
class DpRanks {
 public:
  DpRanks(const std::string& dir, Layout l) : l_(l), world_(dist::make_local_groups(l.tp)) {
    for (int g = 0; g < l.dp; ++g)
      for (auto& h : dist::make_local_groups(l.per_group())) attn_.push_back(std::move(h));
    for (int r = 0; r < l.tp; ++r) backends_.push_back(backend::make_cpu_backend(1));
    models_.resize(size_t(l.tp));
    on_all([&](int r) {
      TensorParallel tp;
      tp.rank = r;
      tp.size = l.tp;
      tp.expert_parallel = l.ep;
      tp.group = world_[size_t(r)].get();
      tp.dp = l.dp;
      tp.attn_group = l.per_group() > 1 ? attn_[size_t(r)].get() : nullptr;
      tp.dense_local = l.dense_local;
      models_[size_t(r)] = Model::load(dir, *backends_[size_t(r)], {}, tp);
      return ForwardOutput{};
    });
  }
  int size() const { return int(models_.size()); }
  int group_of(int r) const { return r / l_.per_group(); }
  Model& model(int r) { return *models_[size_t(r)]; }

  template <typename F>
  std::vector<ForwardOutput> on_all(F fn) {
    return golden::on_ranks(int(world_.size()), fn, [&](int r, const std::string& why) {
      world_[size_t(r)]->abort(why);
      attn_[size_t(r)]->abort(why);
    });
  }

 private:
  Layout l_;
  std::vector<std::unique_ptr<dist::Group>> world_, attn_;
  std::vector<std::unique_ptr<backend::Backend>> backends_;
  std::vector<std::unique_ptr<Model>> models_;
};

ForwardBatch prefill_batch(const std::vector<int32_t>& tokens, LogitsMode mode = LogitsMode::All) {
  ForwardBatch fb;
  SequenceChunk sc;
  sc.tokens = tokens;
  for (int32_t p = 0; p < int32_t(tokens.size() + 3) / 4 + 16; ++p) sc.page_table.push_back(p);
  sc.logits = mode;
  fb.seqs.push_back(sc);
  return fb;
}

double rel(const Tensor& a, const float* ref) {
  golden::ErrorMeter m;
  m.add(a.f32(), ref, a.numel());
  return m.rel();
}

int32_t argmax_last(const ForwardOutput& o) {
  const int64_t V = o.logits.dim(1);
  const float* row = o.logits.f32() + (o.logits.dim(0) - 1) * V;
  return int32_t(std::max_element(row, row + V) - row);
}

class DataParallelGolden : public ::testing::TestWithParam<std::tuple<std::string, Layout>> {
 protected:
  void SetUp() override {
    name_ = std::get<0>(GetParam());
    dir_ = golden::fixture(name_);
    layout_ = std::get<1>(GetParam());
    one_be_ = backend::make_cpu_backend(1);
    one_ = Model::load(dir_, *one_be_);
    ranks_ = std::make_unique<DpRanks>(dir_, layout_);
    seqs_ = golden::sequences(dir_);
    ASSERT_GE(seqs_.size(), 2u);
  }
  // DP group g's sequence: a different one per group (different lengths too).
  const std::vector<int32_t>& seq_of(int g) const { return seqs_[size_t(g) % seqs_.size()]; }

  std::string name_, dir_;
  Layout layout_;
  std::unique_ptr<backend::Backend> one_be_;
  std::unique_ptr<Model> one_;
  std::unique_ptr<DpRanks> ranks_;
  std::vector<std::vector<int32_t>> seqs_;
};

// Every group prefills its own sequence in one step; optionally group `idle` brings nothing.
TEST_P(DataParallelGolden, EachGroupsLogitsMatchOneRankOnItsOwnBatch) {
  for (int idle : {-1, layout_.dp - 1}) {
    std::vector<int32_t> counts;
    for (int g = 0; g < layout_.dp; ++g) counts.push_back(g == idle ? 0 : int32_t(seq_of(g).size()));
    auto outs = ranks_->on_all([&](int r) {
      const int g = ranks_->group_of(r);
      ForwardBatch fb = g == idle ? ForwardBatch{} : prefill_batch(seq_of(g));
      fb.dp_tokens = counts;
      auto cache = ranks_->model(r).make_cache(64, 4);
      return ranks_->model(r).forward(fb, cache);
    });
    for (int r = 0; r < ranks_->size(); ++r) {
      const int g = ranks_->group_of(r);
      if (g == idle) {
        EXPECT_FALSE(outs[size_t(r)].logits.defined()) << "an idle rank returned logits";
        continue;
      }
      auto c1 = one_->make_cache(64, 4);
      ForwardOutput want = one_->forward(prefill_batch(seq_of(g)), c1);
      ASSERT_EQ(outs[size_t(r)].logits.shape(), want.logits.shape()) << "rank " << r;
      const double e = rel(outs[size_t(r)].logits, want.logits.f32());
      EXPECT_LE(e, kTolVsOneRank) << "rank " << r << " (group " << g << ")";
      if (r == 0) {
        const size_t i = size_t(g) % seqs_.size();
        auto ref = read_npy_f32(dir_ + "/ref/logits_fp32_" + std::to_string(i) + ".npy");
        const double vr = rel(outs[0].logits, ref.data.data());
        std::printf("[dp] %s %s%s: group 0 vs --tp 1 %.3g, vs reference %.3g\n", name_.c_str(),
                    layout_.name().c_str(), idle >= 0 ? " (one group idle)" : "", e, vr);
        EXPECT_LE(vr, kTolVsReference);
      }
    }
  }
}

// Greedy decoding of a different sequence in every group, in lock step: each continuation is the one
// --tp 1 gives that sequence; the last group stops early and then steps idle.
TEST_P(DataParallelGolden, GreedyContinuationsAreIdentical) {
  const int steps = 16;
  auto one_greedy = [&](const std::vector<int32_t>& prompt, int n) {
    auto cache = one_->make_cache(64, 4);
    ForwardBatch fb = prefill_batch(prompt, LogitsMode::Last);
    std::vector<int32_t> out;
    for (int s = 0; s < n; ++s) {
      out.push_back(argmax_last(one_->forward(fb, cache)));
      fb.seqs[0].start_pos += int32_t(fb.seqs[0].tokens.size());
      fb.seqs[0].tokens = {out.back()};
    }
    return out;
  };
  const int G = layout_.dp;
  auto stop_at = [&](int g) { return g == G - 1 ? steps / 2 : steps; };
  std::vector<KVCache> caches;
  for (int r = 0; r < ranks_->size(); ++r) caches.push_back(ranks_->model(r).make_cache(64, 4));
  std::vector<ForwardBatch> batch(static_cast<size_t>(G));
  for (int g = 0; g < G; ++g) batch[size_t(g)] = prefill_batch(seq_of(g), LogitsMode::Last);
  std::vector<std::vector<int32_t>> got(static_cast<size_t>(G));
  for (int s = 0; s < steps; ++s) {
    std::vector<int32_t> counts;
    for (int g = 0; g < G; ++g) counts.push_back(s < stop_at(g) ? int32_t(batch[size_t(g)].seqs[0].tokens.size()) : 0);
    auto outs = ranks_->on_all([&](int r) {
      const int g = ranks_->group_of(r);
      ForwardBatch fb = s < stop_at(g) ? batch[size_t(g)] : ForwardBatch{};
      fb.dp_tokens = counts;
      return ranks_->model(r).forward(fb, caches[size_t(r)]);
    });
    for (int g = 0; g < G; ++g) {
      if (s >= stop_at(g)) continue;
      const int first = g * layout_.per_group();
      got[size_t(g)].push_back(argmax_last(outs[size_t(first)]));
      for (int k = 1; k < layout_.per_group(); ++k)
        EXPECT_EQ(argmax_last(outs[size_t(first + k)]), got[size_t(g)].back()) << "rank " << first + k;
      auto& sc = batch[size_t(g)].seqs[0];
      sc.start_pos += int32_t(sc.tokens.size());
      sc.tokens = {got[size_t(g)].back()};
    }
  }
  for (int g = 0; g < G; ++g) EXPECT_EQ(got[size_t(g)], one_greedy(seq_of(g), stop_at(g))) << "group " << g;
}

// The MTP layer: group 0 runs it over its sequence while the other groups are idle in that step.
TEST_P(DataParallelGolden, MtpLayerMatchesOneRankWithOtherGroupsIdle) {
  ASSERT_TRUE(one_->has_mtp());
  const auto& seq = seq_of(0);
  const int64_t T = int64_t(seq.size());
  auto run = [&](Model& m, bool idle, bool dp) {
    std::vector<int32_t> main_counts(size_t(layout_.dp), 0), mtp_counts(size_t(layout_.dp), 0);
    main_counts[0] = int32_t(T);
    mtp_counts[0] = int32_t(T - 1);
    auto cache = m.make_cache(64, 4);
    ForwardBatch fb = idle ? ForwardBatch{} : prefill_batch(seq);
    fb.want_hidden = true;
    if (dp) fb.dp_tokens = main_counts;
    ForwardOutput main = m.forward(fb, cache);
    MtpInput in;
    ForwardBatch mb;
    if (!idle) {
      in.hidden = main.hidden.rows(0, T - 1);
      in.next_tokens.assign(seq.begin() + 1, seq.end());
      mb = prefill_batch({seq.begin(), seq.end() - 1});
    }
    if (dp) mb.dp_tokens = mtp_counts;
    auto mcache = m.make_cache(64, 4);
    return m.mtp_forward(mb, in, mcache);
  };
  ForwardOutput want = run(*one_, false, false);
  auto outs = ranks_->on_all([&](int r) { return run(ranks_->model(r), ranks_->group_of(r) != 0, true); });
  const double e = rel(outs[0].logits, want.logits.f32());
  std::printf("[dp] %s %s MTP: vs --tp 1 %.3g\n", name_.c_str(), layout_.name().c_str(), e);
  EXPECT_LE(e, kTolVsOneRank);
}

// The batches of the padded decode tests: sequence k of a group's batch on pages [16 k, 16 k + 16); a
// prefill with the last logits, or decode step `step` (one token each, 7 + k + 3 step, after the prompt).
using Batches = std::vector<std::vector<int32_t>>;
ForwardBatch padded_test_batch(const Batches& ss, bool decode, int step = 0) {
  ForwardBatch fb;
  for (size_t k = 0; k < ss.size(); ++k) {
    SequenceChunk sc;
    sc.tokens = decode ? std::vector<int32_t>{int32_t(7 + k + 3 * size_t(step))} : ss[k];
    sc.start_pos = decode ? int32_t(ss[k].size()) + step : 0;
    for (int32_t p = 0; p < 16; ++p) sc.page_table.push_back(int32_t(16 * k) + p);
    sc.logits = LogitsMode::Last;
    fb.seqs.push_back(sc);
  }
  return fb;
}

// Every DP group's token count in a prefill of its batch and in a decode step of it.
struct DpCounts {
  std::vector<int32_t> prefill, decode;
};
template <typename SeqsOf>
DpCounts dp_counts(int dp, SeqsOf seqs_of) {
  DpCounts c;
  for (int g = 0; g < dp; ++g) {
    int32_t t = 0;
    for (const auto& q : seqs_of(g)) t += int32_t(q.size());
    c.prefill.push_back(t);
    c.decode.push_back(int32_t(seqs_of(g).size()));
  }
  return c;
}

// A decode step as it runs recorded under DP attention (StepRecorder's padding, op by op here: the CPU
// cannot record): every group padded to the bucket of the largest group's batch, idle groups all padding.
// Each group's logits must still be what one rank gives its own batch.
TEST_P(DataParallelGolden, PaddedDecodeStepsMatchOneRank) {
  for (bool others_idle : {false, true}) {
    auto seqs_of = [&](int g) -> Batches {
      if (g == 0) return {seqs_[0], seqs_[1], seqs_[0]};
      if (others_idle) return {};
      return {seqs_[1]};
    };
    auto batch_of = [](const Batches& ss, bool decode) { return padded_test_batch(ss, decode); };
    const DpCounts counts = dp_counts(layout_.dp, seqs_of);
    auto outs = ranks_->on_all([&](int r) {
      Model& m = ranks_->model(r);
      const auto ss = seqs_of(ranks_->group_of(r));
      auto cache = m.make_cache(64, 4);
      ForwardBatch pre = batch_of(ss, false);
      pre.dp_tokens = counts.prefill;
      m.forward(pre, cache);
      ForwardBatch dec = batch_of(ss, true);
      dec.dp_tokens = counts.decode;
      dec.dp_decode_bs = 3;
      runtime::StepRecorder rec(m, 8, false);
      return rec.forward_padded_eager(runtime::ForwardMode::Decode, dec, cache);
    });
    for (int r = 0; r < ranks_->size(); ++r) {
      const auto ss = seqs_of(ranks_->group_of(r));
      if (ss.empty()) continue;
      auto cache = one_->make_cache(64, 4);
      one_->forward(batch_of(ss, false), cache);
      ForwardOutput want = one_->forward(batch_of(ss, true), cache);
      ASSERT_EQ(outs[size_t(r)].logits.shape(), want.logits.shape()) << "rank " << r;
      const double e = rel(outs[size_t(r)].logits, want.logits.f32());
      if (r == 0)
        std::printf("[dp] %s %s padded decode%s: vs --tp 1 %.3g\n", name_.c_str(), layout_.name().c_str(),
                    others_idle ? " (other groups idle)" : "", e);
      EXPECT_LE(e, kTolVsOneRank) << "rank " << r;
    }
  }
}

// A verify step of speculative decoding as it runs recorded under DP attention: some group verifies drafts
// (dp_verify_q = 4 rows per sequence), so every group pads each sequence to 4 rows — a sequence verifying 1-3
// drafts, one decoding plainly beside them, a group that only decodes, an idle group — and to the bucket of
// the largest group's batch. Each group's rows (every token's logits where it verifies, the last where it
// decodes) must be what one rank gives its own batch unpadded.
TEST_P(DataParallelGolden, PaddedVerifyStepsMatchOneRank) {
  const int32_t q = 4;
  // Group 0 verifies (3, 1 plain, 2 and 4 tokens); group 1 decodes plainly (or idles); others alternate.
  auto seqs_of = [&](int g, bool others_idle) -> Batches {
    if (g == 0) return {seqs_[0], seqs_[1], seqs_[0], seqs_[1]};
    if (others_idle) return {};
    return g % 2 ? Batches{seqs_[1], seqs_[0]} : Batches{seqs_[0]};
  };
  auto verify_batch = [&](const Batches& ss, int g) {
    ForwardBatch fb = padded_test_batch(ss, true);
    for (size_t k = 0; k < fb.seqs.size(); ++k) {
      const int n = g == 0 ? std::vector<int>{3, 1, 2, 4}[k] : g % 2 ? 1 : 2;  // group 0 and the even ones verify
      if (n == 1) continue;  // a plain decode: one token, its last logits
      for (int i = 1; i < n; ++i) fb.seqs[k].tokens.push_back(int32_t(11 + 5 * k + size_t(i)));
      fb.seqs[k].logits = LogitsMode::All;
    }
    return fb;
  };
  for (bool others_idle : {false, true}) {
    std::vector<int32_t> prefill, verify;
    for (int g = 0; g < layout_.dp; ++g) {
      const Batches ss = seqs_of(g, others_idle);
      int32_t t = 0;
      for (const auto& x : ss) t += int32_t(x.size());
      prefill.push_back(t);
      int32_t v = 0;
      for (const auto& sc : ss.empty() ? ForwardBatch{}.seqs : verify_batch(ss, g).seqs) v += int32_t(sc.tokens.size());
      verify.push_back(v);
    }
    auto outs = ranks_->on_all([&](int r) {
      Model& m = ranks_->model(r);
      const int g = ranks_->group_of(r);
      const Batches ss = seqs_of(g, others_idle);
      auto cache = m.make_cache(64, 4);
      ForwardBatch pre = padded_test_batch(ss, false);
      pre.dp_tokens = prefill;
      m.forward(pre, cache);
      ForwardBatch step = ss.empty() ? ForwardBatch{} : verify_batch(ss, g);
      step.dp_tokens = verify;
      step.dp_decode_bs = 4;
      step.dp_verify_q = q;
      runtime::StepRecorder rec(m, 8, false);
      rec.set_verify_tokens(q);
      return rec.forward_padded_eager(runtime::ForwardMode::Decode, step, cache);
    });
    double worst = 0;
    for (int r = 0; r < ranks_->size(); ++r) {
      const int g = ranks_->group_of(r);
      const Batches ss = seqs_of(g, others_idle);
      if (ss.empty()) continue;
      auto cache = one_->make_cache(64, 4);
      one_->forward(padded_test_batch(ss, false), cache);
      ForwardOutput want = one_->forward(verify_batch(ss, g), cache);
      ASSERT_EQ(outs[size_t(r)].logits.shape(), want.logits.shape()) << "rank " << r;
      EXPECT_EQ(outs[size_t(r)].logits_row0, want.logits_row0) << "rank " << r;
      worst = std::max(worst, rel(outs[size_t(r)].logits, want.logits.f32()));
    }
    std::printf("[dp] %s %s padded verify%s: vs --tp 1 %.3g\n", name_.c_str(), layout_.name().c_str(),
                others_idle ? " (other groups idle)" : "", worst);
    EXPECT_LE(worst, kTolVsOneRank);
  }
}

// The same padded decode steps over FP8 KV pools (packed rows with their scales, both sides): padding
// tokens write nothing into a live row. The ranks' fp32 sums differ from one rank's at ~1e-7, and a KV
// value that lands near an e4m3 rounding boundary could round the other way (none does on these inputs:
// 3e-7 .. 6e-7 measured), so the bound leaves room for one such flip, far below what a row written by a
// padding token would do.
TEST_P(DataParallelGolden, Fp8KvPaddedDecodeStepsMatchOneRank) {
  const auto batch_of = padded_test_batch;
  auto seqs_of = [&](int g) -> Batches {
    if (g == 0) return {seqs_[0], seqs_[1], seqs_[0]};
    return {seqs_[1]};
  };
  const int steps = 4;
  const DpCounts counts = dp_counts(layout_.dp, seqs_of);
  std::vector<std::vector<ForwardOutput>> outs(static_cast<size_t>(steps));
  std::vector<KVCache> caches;
  for (int r = 0; r < ranks_->size(); ++r) caches.push_back(ranks_->model(r).make_cache(64, 4, DType::F8_E4M3));
  ranks_->on_all([&](int r) {
    ForwardBatch pre = batch_of(seqs_of(ranks_->group_of(r)), false, 0);
    pre.dp_tokens = counts.prefill;
    return ranks_->model(r).forward(pre, caches[size_t(r)]);
  });
  for (int step = 0; step < steps; ++step)
    outs[size_t(step)] = ranks_->on_all([&](int r) {
      Model& m = ranks_->model(r);
      ForwardBatch dec = batch_of(seqs_of(ranks_->group_of(r)), true, step);
      dec.dp_tokens = counts.decode;
      dec.dp_decode_bs = 4;
      runtime::StepRecorder rec(m, 8, false);
      return rec.forward_padded_eager(runtime::ForwardMode::Decode, dec, caches[size_t(r)]);
    });
  double worst = 0;
  for (int r = 0; r < ranks_->size(); ++r) {
    const auto ss = seqs_of(ranks_->group_of(r));
    auto cache = one_->make_cache(64, 4, DType::F8_E4M3);
    one_->forward(batch_of(ss, false, 0), cache);
    for (int step = 0; step < steps; ++step) {
      ForwardOutput want = one_->forward(batch_of(ss, true, step), cache);
      const ForwardOutput& got = outs[size_t(step)][size_t(r)];
      ASSERT_EQ(got.logits.shape(), want.logits.shape()) << "rank " << r;
      worst = std::max(worst, rel(got.logits, want.logits.f32()));
    }
  }
  std::printf("[dp] %s %s fp8 KV, %d padded decodes: vs --tp 1 %.3g\n", name_.c_str(), layout_.name().c_str(), steps,
              worst);
  EXPECT_LE(worst, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, DataParallelGolden,
    ::testing::Combine(::testing::Values("tiny_v32_fp8", "tiny_v3_bf16"),
                       ::testing::Values(Layout{2, 2, false, false}, Layout{4, 2, false, false},
                                         Layout{2, 2, true, false}, Layout{4, 2, true, true},
                                         Layout{4, 4, false, true})),
    [](const auto& info) { return std::get<0>(info.param) + "_" + std::get<1>(info.param).name(); });

// A step whose token counts do not match the group's batch is refused, not run into a hang.
TEST(DataParallelLayout, MismatchedTokenCountsAreRefused) {
  const std::string dir = golden::fixture("tiny_v3_bf16");
  DpRanks ranks(dir, Layout{2, 2, false, false});
  auto cache = ranks.model(0).make_cache(64, 4);
  ForwardBatch fb = prefill_batch({1, 2, 3});
  fb.dp_tokens = {5, 3};  // says 5 for group 0, which brings 3
  try {
    ranks.model(0).forward(fb, cache);
    FAIL() << "a wrong token count was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("brings 3 tokens"), std::string::npos) << e.what();
  }
}

}  // namespace
