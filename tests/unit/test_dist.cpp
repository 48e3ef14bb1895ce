// dist::LocalGroup: the collectives against simple references on random data, every rank left with
// the same bits, and abort waking ranks that wait for a failed one.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <random>

#include "dist/local_group.h"

using namespace ds;

namespace {

template <typename F>
void on_ranks(std::vector<std::unique_ptr<dist::Group>>& g, F fn) {
  std::vector<std::future<void>> f;
  for (int r = 0; r < int(g.size()); ++r) f.push_back(std::async(std::launch::async, [&, r] { fn(r, *g[size_t(r)]); }));
  for (auto& x : f) x.get();
}

Tensor random_tensor(int64_t n, uint32_t seed) {
  Tensor t = Tensor::empty({n}, DType::F32);
  std::mt19937 rng(seed);
  std::normal_distribution<float> d;
  for (int64_t i = 0; i < n; ++i) t.f32()[i] = d(rng) * 100;
  return t;
}

TEST(LocalGroup, AllReduceSumsAndLeavesTheSameBitsEverywhere) {
  for (int n : {1, 2, 3, 4, 7})
    for (int64_t numel : {1, 5, 1000, 4099}) {
      auto g = dist::make_local_groups(n);
      std::vector<Tensor> in, out;
      for (int r = 0; r < n; ++r) in.push_back(random_tensor(numel, uint32_t(r * 31 + numel)));
      for (int r = 0; r < n; ++r) {
        out.push_back(Tensor::empty({numel}, DType::F32));
        std::copy_n(in[r].f32(), numel, out[r].f32());
      }
      for (int rep = 0; rep < 3; ++rep) {  // repeated collectives reuse the rendezvous
        for (int r = 0; r < n; ++r) std::copy_n(in[r].f32(), numel, out[r].f32());
        on_ranks(g, [&](int r, dist::Group& grp) { grp.all_reduce_sum(out[size_t(r)]); });
      }
      for (int64_t i = 0; i < numel; ++i) {
        double want = 0;
        for (int r = 0; r < n; ++r) want += in[r].f32()[i];
        ASSERT_NEAR(out[0].f32()[i], want, 1e-3 + 1e-5 * std::fabs(want)) << n << " ranks, element " << i;
        for (int r = 1; r < n; ++r) ASSERT_EQ(out[r].f32()[i], out[0].f32()[i]) << "rank " << r << " element " << i;
      }
    }
}

// Each rank's chunk of the sum, bit for bit the all-reduce's (DP attention's combine must agree with
// the tensor-parallel path's all-reduce).
TEST(LocalGroup, ReduceScatterIsTheAllReducesChunk) {
  for (int n : {1, 2, 3, 4})
    for (int64_t chunk : {1, 7, 1000}) {
      auto g = dist::make_local_groups(n);
      std::vector<Tensor> in, mine, summed;
      for (int r = 0; r < n; ++r) {
        in.push_back(random_tensor(chunk * n, uint32_t(r * 17 + chunk)));
        mine.push_back(Tensor::empty({chunk}, DType::F32));
        summed.push_back(Tensor::empty({chunk * n}, DType::F32));
        std::copy_n(in[r].f32(), chunk * n, summed[r].f32());
      }
      on_ranks(g, [&](int r, dist::Group& grp) {
        grp.reduce_scatter_sum(in[size_t(r)], mine[size_t(r)]);
        grp.all_reduce_sum(summed[size_t(r)]);
      });
      for (int r = 0; r < n; ++r)
        for (int64_t i = 0; i < chunk; ++i) {
          double want = 0;
          for (int s = 0; s < n; ++s) want += in[s].f32()[r * chunk + i];
          ASSERT_NEAR(mine[r].f32()[i], want, 1e-3 + 1e-5 * std::fabs(want)) << n << " ranks, rank " << r;
          ASSERT_EQ(mine[r].f32()[i], summed[r].f32()[r * chunk + i]) << n << " ranks, rank " << r << " element " << i;
        }
      Tensor bad = Tensor::empty({chunk + 1}, DType::F32);
      if (n == 1) EXPECT_THROW(g[0]->reduce_scatter_sum(in[0], bad), std::exception);
    }
}

TEST(LocalGroup, AllGatherAndBroadcast) {
  const int n = 3;
  auto g = dist::make_local_groups(n);
  std::vector<Tensor> in, all, b;
  for (int r = 0; r < n; ++r) {
    in.push_back(random_tensor(6, uint32_t(r)));
    all.push_back(Tensor::empty({n, 6}, DType::F32));
    b.push_back(random_tensor(4, uint32_t(100 + r)));
  }
  Tensor root_copy = random_tensor(4, 102);
  on_ranks(g, [&](int r, dist::Group& grp) {
    grp.all_gather(in[size_t(r)], all[size_t(r)]);
    grp.broadcast(b[size_t(r)], 2);
  });
  for (int r = 0; r < n; ++r) {
    for (int s = 0; s < n; ++s)
      for (int i = 0; i < 6; ++i) EXPECT_EQ(all[r].f32()[s * 6 + i], in[s].f32()[i]);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(b[r].f32()[i], root_copy.f32()[i]);
  }
}

TEST(LocalGroup, AbortWakesRanksWaitingForAFailedOne) {
  auto g = dist::make_local_groups(3);
  Tensor t = random_tensor(8, 1);
  std::vector<std::future<std::string>> waiting;
  for (int r = 0; r < 2; ++r)
    waiting.push_back(std::async(std::launch::async, [&, r]() -> std::string {
      Tensor mine = random_tensor(8, uint32_t(r));
      try {
        g[size_t(r)]->all_reduce_sum(mine);
        return "returned";
      } catch (const dist::GroupAborted& e) {
        return e.what();
      }
    }));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  g[2]->abort("rank 2: out of memory");
  for (auto& w : waiting) {
    ASSERT_EQ(w.wait_for(std::chrono::seconds(10)), std::future_status::ready) << "a rank still waits";
    EXPECT_NE(w.get().find("rank 2: out of memory"), std::string::npos);
  }
  EXPECT_TRUE(g[0]->aborted());
  EXPECT_THROW(g[2]->all_reduce_sum(t), dist::GroupAborted);  // later collectives fail at once
}

TEST(LocalGroup, RefusesDeviceTensorsAndMismatchedGathers) {
  auto g = dist::make_local_groups(1);
  Tensor in = random_tensor(4, 0), out = Tensor::empty({5}, DType::F32);
  EXPECT_THROW(g[0]->all_gather(in, out), std::exception);
}

}  // namespace
