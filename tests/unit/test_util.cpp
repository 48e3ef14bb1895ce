#include <gtest/gtest.h>

#include "util/error.h"
#include "util/host_buffer_pool.h"
#include "util/worker_pool.h"

#include <atomic>
#include <set>
#include <thread>
#include <vector>

TEST(Util, CheckThrowsWithFormattedMessage) {
  try {
    DS_CHECK(1 + 1 == 3, "tensor '{}' has {} dims", "x", 3);
    FAIL() << "DS_CHECK did not throw";
  } catch (const ds::Error& e) {
    EXPECT_STREQ(e.what(), "tensor 'x' has 3 dims");
  }
  EXPECT_NO_THROW(DS_CHECK(true, "never"));
}

// ---- HostBufferPool (util/host_buffer_pool.h) ----

TEST(HostBufferPool, ClassesWasteAQuarterAtMost) {
  EXPECT_EQ(ds::HostBufferPool::class_size(1), size_t(64) << 10);
  for (size_t n : {size_t(65537), size_t(1) << 20, (size_t(1) << 20) + 1, size_t(56'000'000), size_t(850'000'123)}) {
    const size_t c = ds::HostBufferPool::class_size(n);
    EXPECT_GE(c, n);
    EXPECT_LE(double(c), 1.25 * double(n)) << n;
    EXPECT_EQ(ds::HostBufferPool::class_size(c), c) << "a class's own size is its class";
  }
}

TEST(HostBufferPool, ReturnedBuffersAreReusedWithinTheBudget) {
  int made = 0, freed = 0;
  auto alloc = [&](size_t n) {
    ++made;
    return ds::HostBytes(new uint8_t[n], n, [&](uint8_t* p, size_t) { ++freed, delete[] p; });
  };
  const size_t cls = ds::HostBufferPool::class_size(100'000);
  auto pool = ds::HostBufferPool::make(alloc, 2 * cls);
  const uint8_t* first = nullptr;
  {
    ds::HostBytes a = pool->take(100'000);
    EXPECT_EQ(a.size(), 100'000u);
    EXPECT_EQ(a.capacity(), cls);
    first = a.data();
    EXPECT_EQ(pool->stats().lent_bytes, cls);
  }
  EXPECT_EQ(pool->stats().lent_bytes, 0u);
  EXPECT_EQ(pool->stats().kept_bytes, cls);
  {
    ds::HostBytes b = pool->take(110'000);  // the same class: the kept buffer again
    EXPECT_EQ(b.data(), first);
    EXPECT_EQ(b.size(), 110'000u);
    ds::HostBytes c = pool->take(100'000), d = pool->take(100'000), e = pool->take(1 << 20);
    EXPECT_EQ(made, 4);
    EXPECT_EQ(pool->stats().reused, 1);
  }
  // Four came back; the budget keeps two of the small class and frees the rest.
  EXPECT_EQ(pool->stats().kept_bytes, 2 * cls);
  EXPECT_EQ(freed, 2);
  // A buffer still out when the pool goes is freed when it is dropped.
  ds::HostBytes late = pool->take(100'000);
  pool.reset();
  EXPECT_EQ(freed, 3);  // the kept one the pool held (the other is `late`)
  late = ds::HostBytes();
  EXPECT_EQ(freed, 4);
}

TEST(HostBufferPool, TheLendingLimitRefusesWhatWouldPassIt) {
  auto alloc = [](size_t n) { return ds::HostBytes::allocate(n); };
  const size_t cls = ds::HostBufferPool::class_size(100'000);
  auto pool = ds::HostBufferPool::make(alloc, 0, 2 * cls);
  ds::HostBytes a = pool->take(100'000), b = pool->take(100'000);
  EXPECT_THROW(pool->take(1), ds::Error);  // a third would pass the limit
  EXPECT_EQ(pool->stats().lent_bytes, 2 * cls) << "a refused take lends nothing";
  a = ds::HostBytes();
  EXPECT_NO_THROW(pool->take(100'000));  // room again once one came back
}

// ---- WorkerPool (util/worker_pool.h) ----

TEST(WorkerPool, EveryIndexRunsOnceOnSeveralThreads) {
  ds::WorkerPool pool(3);
  for (size_t n : {size_t(0), size_t(1), size_t(2), size_t(7), size_t(1000)}) {
    std::vector<std::atomic<int>> hits(n);
    std::mutex mu;
    std::set<std::thread::id> ids;
    pool.parallel_for(n, [&](size_t i) {
      hits[i].fetch_add(1);
      if (n == 1000) {
        std::this_thread::sleep_for(std::chrono::microseconds(50));  // long enough for the workers to join in
        std::lock_guard lk(mu);
        ids.insert(std::this_thread::get_id());
      }
    });
    for (size_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 1) << "n " << n << " index " << i;
    if (n == 1000) EXPECT_GT(ids.size(), 1u) << "the workers took part";
  }
}

TEST(WorkerPool, BackToBackAndConcurrentLoops) {
  ds::WorkerPool pool(2);
  std::atomic<int64_t> sum{0};
  for (int round = 0; round < 200; ++round) pool.parallel_for(5, [&](size_t i) { sum += int64_t(i); });
  EXPECT_EQ(sum.load(), 200 * 10);
  // Two callers at once (DP groups' runners): they take turns, nothing is lost.
  sum = 0;
  auto caller = [&] {
    for (int round = 0; round < 100; ++round) pool.parallel_for(9, [&](size_t i) { sum += int64_t(i); });
  };
  std::thread a(caller), b(caller);
  a.join();
  b.join();
  EXPECT_EQ(sum.load(), 2 * 100 * 36);
}
