// Prefill/decode disaggregation's transport (disagg/): UCX messages between two workers, and the bootstrap
// handoff between a prefill and a decode side in one process (rooms in either order, failures, forget).
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <numeric>
#include <set>
#include <thread>

#include "disagg/kv_transfer.h"
#include "disagg/pd_handoff.h"
#include "util/error.h"

using namespace ds;
using namespace ds::disagg;
using runtime::BootstrapRoom;
using runtime::DisaggMode;
using runtime::KvArrival;

namespace {

std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = uint8_t(seed + i * 31 + (i >> 8));
  return v;
}

HostBytes owned(std::vector<uint8_t> v) { return HostBytes::from_vector(std::move(v)); }
std::vector<uint8_t> bytes_of(const HostBytes& b) { return {b.span().begin(), b.span().end()}; }

// Waits up to `s` seconds for an arrival on a decode handoff.
std::vector<KvArrival> wait_arrivals(runtime::KvHandoff& h, double s = 10) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(s);
  while (std::chrono::steady_clock::now() < until) {
    auto a = h.take_arrivals();
    if (!a.empty()) return a;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return {};
}

}  // namespace

TEST(KvTransfer, UcxMovesMessagesByRoom) {
  if (!have_ucx()) GTEST_SKIP() << "built without UCX";
  auto a = make_ucx_transfer(), b = make_ucx_transfer();
  std::mutex mu;
  std::condition_variable cv;
  std::map<uint64_t, std::vector<uint8_t>> got;
  std::set<const uint8_t*> lent;  // the buffers the receiver's owner gave (set_buffers)
  b->set_receiver([&](uint64_t room, HostBytes data) {
    std::lock_guard lk(mu);
    EXPECT_TRUE(lent.count(data.data())) << "room " << room << " arrived in a buffer the owner did not give";
    got[room] = bytes_of(data);
    cv.notify_all();
  });
  b->set_buffers([&](size_t n) {
    HostBytes h = HostBytes::allocate(n);
    std::lock_guard lk(mu);
    lent.insert(h.data());
    return h;
  });
  // A small message (eager) and a large one (rendezvous), and an empty one.
  const std::vector<std::pair<uint64_t, std::vector<uint8_t>>> sent = {
      {7, pattern(100, 1)}, {(uint64_t(1) << 62) + 5, pattern(5 << 20, 2)}, {9, {}}};
  std::vector<std::promise<std::string>> done(sent.size());
  for (size_t i = 0; i < sent.size(); ++i)
    a->send(b->local_address(), sent[i].first, owned(sent[i].second), 10,
            [&, i](const std::string& err) { done[i].set_value(err); });
  for (auto& d : done) EXPECT_EQ(d.get_future().get(), "");
  std::unique_lock lk(mu);
  ASSERT_TRUE(cv.wait_for(lk, std::chrono::seconds(10), [&] { return got.size() == sent.size(); }));
  for (const auto& [room, data] : sent) EXPECT_EQ(got[room], data) << "room " << room;
}

TEST(KvTransfer, UnknownBackendIsRefused) {
  try {
    make_kv_transfer("mooncake");
    FAIL() << "no error";
  } catch (const ds::Error& e) {
    EXPECT_NE(std::string(e.what()).find("mooncake"), std::string::npos) << e.what();
  }
}

TEST(PdHandoff, RoomsMeetInEitherOrder) {
  if (!have_ucx()) GTEST_SKIP() << "built without UCX";
  PdConfig pc{DisaggMode::Prefill, "127.0.0.1", 0, "ucx", 10};
  auto prefill = make_pd_handoff(pc);
  ASSERT_GT(prefill->bootstrap_port(), 0);
  auto decode = make_pd_handoff({DisaggMode::Decode, "", 0, "ucx", 10});
  std::atomic<int> wakes{0};
  decode->set_wakeup([&] { ++wakes; });
  const BootstrapRoom r1{"127.0.0.1", prefill->bootstrap_port(), 11}, r2{"127.0.0.1", prefill->bootstrap_port(), 12};
  // r1: the decode side registers first; r2: the prefill side's KV is ready first.
  decode->expect(r1);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  prefill->send(r1, owned(pattern(1000, 3)));
  prefill->send(r2, owned(pattern(70000, 4)));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  decode->expect(r2);
  std::map<uint64_t, std::vector<uint8_t>> got;
  while (got.size() < 2) {
    auto a = wait_arrivals(*decode);
    ASSERT_FALSE(a.empty()) << "timed out";
    for (auto& x : a) {
      EXPECT_EQ(x.error, "");
      got[x.room] = bytes_of(x.packed);
    }
  }
  EXPECT_EQ(got[11], pattern(1000, 3));
  EXPECT_EQ(got[12], pattern(70000, 4));
  EXPECT_GE(wakes.load(), 1);
}

TEST(PdHandoff, FailuresArriveAsErrors) {
  if (!have_ucx()) GTEST_SKIP() << "built without UCX";
  auto prefill = make_pd_handoff({DisaggMode::Prefill, "127.0.0.1", 0, "ucx", 10});
  auto decode = make_pd_handoff({DisaggMode::Decode, "", 0, "ucx", 2});
  const int port = prefill->bootstrap_port();
  // The prefill side failed the request: the decode side hears why.
  decode->expect({"127.0.0.1", port, 21});
  prefill->send({"127.0.0.1", port, 21}, {}, "the request ended with finish reason abort");
  auto a = wait_arrivals(*decode);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].room, 21u);
  EXPECT_NE(a[0].error.find("finish reason abort"), std::string::npos) << a[0].error;
  // A forgotten room's KV is dropped.
  decode->expect({"127.0.0.1", port, 22});
  decode->forget(22);
  prefill->send({"127.0.0.1", port, 22}, owned(pattern(10, 1)));
  EXPECT_TRUE(wait_arrivals(*decode, 0.5).empty());
  // Nobody listens at the bootstrap address: an error names it.
  prefill.reset();
  decode->expect({"127.0.0.1", port, 23});
  a = wait_arrivals(*decode);
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(a.back().room, 23u);
  EXPECT_NE(a.back().error.find(std::to_string(port)), std::string::npos) << a.back().error;
}
