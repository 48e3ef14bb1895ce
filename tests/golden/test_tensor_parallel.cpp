// Tensor / expert parallelism on CPU ranks (threads with a LocalGroup, each rank its own backend and
// only its slices of the checkpoint): logits of --tp 2 / 4 (with and without --ep) against --tp 1 and
// against transformers' reference, greedy continuations identical, the MTP layer too.
#include <gtest/gtest.h>

#include <cstdio>

#include "backend/backend.h"
#include "dist/group.h"
#include "dist/local_group.h"
#include "golden_util.h"
#include "rank_threads.h"

using namespace ds;
using namespace ds::model;

namespace {
constexpr double kTolVsOneRank = 1e-5, kTolVsReference = 1e-4;

struct Layout {
  int tp;
  bool ep;
  std::string name() const { return "tp" + std::to_string(tp) + (ep ? "_ep" : ""); }
};

// One model replica cut over `tp` CPU ranks, loaded and run on one thread per rank.
class Ranks {
 public:
  Ranks(const std::string& dir, Layout l) : groups_(dist::make_local_groups(l.tp)) {
    for (int r = 0; r < l.tp; ++r) backends_.push_back(backend::make_cpu_backend(1));
    models_.resize(size_t(l.tp));
    on_all([&](int r) {
      TensorParallel tp{r, l.tp, l.ep, groups_[size_t(r)].get()};
      models_[size_t(r)] = Model::load(dir, *backends_[size_t(r)], {}, tp);
      return ForwardOutput{};
    });
  }
  int size() const { return int(models_.size()); }
  Model& model(int r) { return *models_[size_t(r)]; }

  // fn(rank) on every rank at once; a rank that throws aborts the group so the others cannot hang.
  template <typename F>
  std::vector<ForwardOutput> on_all(F fn) {
    return golden::on_ranks(int(groups_.size()), fn,
                            [&](int r, const std::string& why) { groups_[size_t(r)]->abort(why); });
  }

 private:
  std::vector<std::unique_ptr<dist::Group>> groups_;
  std::vector<std::unique_ptr<backend::Backend>> backends_;
  std::vector<std::unique_ptr<Model>> models_;
};

ForwardBatch prefill_batch(const std::vector<int32_t>& tokens) {
  ForwardBatch fb;
  SequenceChunk sc;
  sc.tokens = tokens;
  for (int32_t p = 0; p < int32_t(tokens.size() + 3) / 4; ++p) sc.page_table.push_back(p);
  sc.logits = LogitsMode::All;
  fb.seqs.push_back(sc);
  return fb;
}

double rel(const Tensor& a, const float* ref) {
  golden::ErrorMeter m;
  m.add(a.f32(), ref, a.numel());
  return m.rel();
}

class TensorParallelGolden : public ::testing::TestWithParam<std::tuple<std::string, Layout>> {
 protected:
  void SetUp() override {
    dir_ = golden::fixture(std::get<0>(GetParam()));
    layout_ = std::get<1>(GetParam());
    one_be_ = backend::make_cpu_backend(1);
    one_ = Model::load(dir_, *one_be_);
    ranks_ = std::make_unique<Ranks>(dir_, layout_);
    seqs_ = golden::sequences(dir_);
  }
  std::string dir_;
  Layout layout_;
  std::unique_ptr<backend::Backend> one_be_;
  std::unique_ptr<Model> one_;
  std::unique_ptr<Ranks> ranks_;
  std::vector<std::vector<int32_t>> seqs_;
};

TEST_P(TensorParallelGolden, PrefillLogitsMatchOneRankAndReference) {
  for (size_t i = 0; i < seqs_.size(); ++i) {
    auto cache1 = one_->make_cache(64, 4);
    ForwardOutput want = one_->forward(prefill_batch(seqs_[i]), cache1);
    auto outs = ranks_->on_all([&](int r) {
      auto cache = ranks_->model(r).make_cache(64, 4);
      return ranks_->model(r).forward(prefill_batch(seqs_[i]), cache);
    });
    ASSERT_EQ(outs[0].logits.shape(), want.logits.shape());
    for (int r = 1; r < ranks_->size(); ++r)  // every rank holds the same gathered logits, bit for bit
      EXPECT_EQ(0, std::memcmp(outs[r].logits.raw(), outs[0].logits.raw(), outs[0].logits.nbytes())) << "rank " << r;
    auto ref = read_npy_f32(dir_ + "/ref/logits_fp32_" + std::to_string(i) + ".npy");
    const double vs_one = rel(outs[0].logits, want.logits.f32()), vs_ref = rel(outs[0].logits, ref.data.data());
    std::printf("[tp] %s %s seq %zu: vs --tp 1 %.3g, vs reference %.3g\n", std::get<0>(GetParam()).c_str(),
                layout_.name().c_str(), i, vs_one, vs_ref);
    EXPECT_LE(vs_one, kTolVsOneRank) << "sequence " << i;
    EXPECT_LE(vs_ref, kTolVsReference) << "sequence " << i;
  }
}

// Greedy decoding, token by token through the paged cache: the same continuation as one rank.
TEST_P(TensorParallelGolden, GreedyContinuationIsIdentical) {
  const int steps = 24;
  auto greedy = [&](const std::function<ForwardOutput(const ForwardBatch&)>& fwd) {
    std::vector<int32_t> out, ctx = seqs_[0];
    ForwardBatch fb = prefill_batch(ctx);
    fb.seqs[0].logits = LogitsMode::Last;
    for (int32_t p = 0; p < 16; ++p) fb.seqs[0].page_table.push_back(int32_t(fb.seqs[0].page_table.size()));
    for (int s = 0; s < steps; ++s) {
      ForwardOutput o = fwd(fb);
      const float* row = o.logits.f32();
      const int64_t V = o.logits.dim(1);
      out.push_back(int32_t(std::max_element(row, row + V) - row));
      fb.seqs[0].start_pos += int32_t(fb.seqs[0].tokens.size());
      fb.seqs[0].tokens = {out.back()};
    }
    return out;
  };
  auto cache1 = one_->make_cache(64, 4);
  auto want = greedy([&](const ForwardBatch& fb) { return one_->forward(fb, cache1); });
  std::vector<KVCache> caches;
  for (int r = 0; r < ranks_->size(); ++r) caches.push_back(ranks_->model(r).make_cache(64, 4));
  auto got = greedy([&](const ForwardBatch& fb) {
    return ranks_->on_all([&](int r) { return ranks_->model(r).forward(fb, caches[size_t(r)]); })[0];
  });
  EXPECT_EQ(want, got);
}

TEST_P(TensorParallelGolden, MtpLayerMatchesOneRank) {
  ASSERT_TRUE(one_->has_mtp());
  const auto& seq = seqs_[0];
  const int64_t T = int64_t(seq.size());
  auto run = [&](Model& m) {
    auto cache = m.make_cache(64, 4);
    ForwardBatch fb = prefill_batch(seq);
    fb.want_hidden = true;
    ForwardOutput main = m.forward(fb, cache);
    MtpInput in;
    in.hidden = main.hidden.rows(0, T - 1);
    in.next_tokens.assign(seq.begin() + 1, seq.end());
    auto mcache = m.make_cache(64, 4);
    return m.mtp_forward(prefill_batch({seq.begin(), seq.end() - 1}), in, mcache);
  };
  ForwardOutput want = run(*one_);
  auto outs = ranks_->on_all([&](int r) { return run(ranks_->model(r)); });
  const double e = rel(outs[0].logits, want.logits.f32());
  std::printf("[tp] %s %s MTP: vs --tp 1 %.3g\n", std::get<0>(GetParam()).c_str(), layout_.name().c_str(), e);
  EXPECT_LE(e, kTolVsOneRank);
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, TensorParallelGolden,
    ::testing::Combine(::testing::Values("tiny_v32_fp8", "tiny_v3_bf16"),
                       ::testing::Values(Layout{2, false}, Layout{4, false}, Layout{2, true}, Layout{4, true})),
    [](const auto& info) { return std::get<0>(info.param) + "_" + std::get<1>(info.param).name(); });

// A layout the model cannot be cut into is refused naming the constraint.
TEST(TensorParallelLayout, IndivisibleHeadsAreRefused) {
  const std::string dir = golden::fixture("tiny_v3_bf16");
  auto groups = dist::make_local_groups(3);
  auto be = backend::make_cpu_backend(1);
  try {
    Model::load(dir, *be, {}, TensorParallel{0, 3, false, groups[0].get()});
    FAIL() << "--tp 3 of 4 heads was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("attention heads"), std::string::npos) << e.what();
  }
}

}  // namespace
