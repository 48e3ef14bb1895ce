// dist::LocalGroup: the collectives against simple references on random data, every rank left with
// the same bits, and abort waking ranks that wait for a failed one.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <random>
#include <thread>

#include <unistd.h>

#include "dist/control_channel.h"
#include "dist/gloo_group.h"
#include "dist/local_group.h"
#include "held_port.h"

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
      if (n == 1) {
        EXPECT_THROW(g[0]->reduce_scatter_sum(in[0], bad), std::exception);
      }
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

// ---- multi-node pieces: the rendezvous store over a real TCP control channel, Gloo groups across it ----

namespace {

TEST(ControlChannel, StoreOverTcpAndFraming) {
  // Held by this process until the listener takes it (SO_REUSEADDR): a pid-derived port could be one of the
  // machine's ephemeral ports in use, which failed this test now and then under ctest -j.
  const HeldPort held;
  const int port = held.port;
  // Node 1 connects on a thread of its own; its exception (if any) is rethrown here, not left to terminate.
  auto node1 = std::async(std::launch::async,
                          [&] { return dist::connect_to_node0("127.0.0.1", port, 1, std::chrono::seconds(20)); });
  auto nodes = dist::accept_nodes("127.0.0.1", port, 2, std::chrono::seconds(20));
  std::unique_ptr<dist::Connection> to0 = node1.get();
  ASSERT_EQ(nodes.size(), 1u);
  dist::LocalStore store;
  std::thread server([&] { store.serve(*nodes[0]); });
  dist::RemoteStore remote(*to0);
  std::thread late([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    store.set("key", std::string("a\0b", 3));  // bytes, NULs included
  });
  EXPECT_EQ(remote.get("key", std::chrono::seconds(5)), std::string("a\0b", 3));  // waits for it
  remote.set("back", "x");
  EXPECT_EQ(store.get("back", std::chrono::seconds(5)), "x");
  to0->send({dist::MsgType::RendezvousDone, {}});
  server.join();
  late.join();
  const std::string big(1 << 20, 'z');
  nodes[0]->send({dist::MsgType::Step, big});
  EXPECT_EQ(to0->recv_expect(dist::MsgType::Step).body, big);
  nodes[0]->send({dist::MsgType::Bye, {}});
  EXPECT_THROW(to0->recv_expect(dist::MsgType::Config), std::exception);  // another type than expected
  nodes[0].reset();  // node 0 goes away: the other end's next receive fails, naming the peer
  EXPECT_THROW(to0->recv(), std::exception);
}

TEST(ControlChannel, ParsesHostPort) {
  EXPECT_EQ(dist::parse_host_port("10.0.0.1:5000"), std::make_pair(std::string("10.0.0.1"), 5000));
  EXPECT_EQ(dist::parse_host_port("[::1]:7"), std::make_pair(std::string("::1"), 7));
  EXPECT_THROW(dist::parse_host_port("host"), std::exception);
  EXPECT_THROW(dist::parse_host_port("host:0"), std::exception);
}

TEST(GlooGroup, CollectivesMatchLocalGroupBits) {
  if (!dist::have_gloo()) GTEST_SKIP() << "built without Gloo";
  const int n = 3;
  dist::LocalStore store;
  std::vector<std::unique_ptr<dist::Group>> gloo(n), local = dist::make_local_groups(n);
  {
    std::vector<std::thread> joins;
    for (int r = 0; r < n; ++r)
      joins.emplace_back([&, r] { gloo[size_t(r)] = dist::make_gloo_group(store, "t/", r, n, "127.0.0.1"); });
    for (auto& j : joins) j.join();
  }
  std::vector<Tensor> a, b, g, rs;
  for (int r = 0; r < n; ++r) {
    a.push_back(random_tensor(999, uint32_t(r + 5)));
    b.push_back(Tensor::empty({999}, DType::F32));
    std::copy_n(a[r].f32(), 999, b[r].f32());
    g.push_back(Tensor::empty({n, 999}, DType::F32));
    rs.push_back(Tensor::empty({333}, DType::F32));
  }
  on_ranks(gloo, [&](int r, dist::Group& grp) {
    grp.all_gather(a[size_t(r)], g[size_t(r)]);
    grp.reduce_scatter_sum(a[size_t(r)], rs[size_t(r)]);
    grp.all_reduce_sum(a[size_t(r)]);
  });
  on_ranks(local, [&](int r, dist::Group& grp) { grp.all_reduce_sum(b[size_t(r)]); });
  for (int r = 0; r < n; ++r)
    for (int64_t i = 0; i < 999; ++i) {
      ASSERT_EQ(a[r].f32()[i], a[0].f32()[i]) << "ranks disagree, rank " << r;  // same bits everywhere
      ASSERT_NEAR(a[r].f32()[i], b[0].f32()[i], 1e-3 + 1e-5 * std::fabs(b[0].f32()[i]));
    }
  for (int r = 0; r < n; ++r)
    for (int64_t i = 0; i < 333; ++i) ASSERT_EQ(rs[r].f32()[i], a[0].f32()[r * 333 + i]);
  // abort: the failed rank closes its connections; a peer's next collective fails instead of hanging.
  gloo[2]->abort("rank 2: test");
  EXPECT_THROW(gloo[2]->all_reduce_sum(a[2]), dist::GroupAborted);
}

}  // namespace
