#include <gtest/gtest.h>

#include "runtime/page_pool.h"
#include "util/error.h"

using ds::runtime::PagePool;

TEST(PagePool, AllocateIsAllOrNothing) {
  PagePool pool(4, 16);
  EXPECT_EQ(pool.num_free(), 4);
  auto a = pool.allocate(3);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(*a, (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(pool.num_used(), 3);
  EXPECT_FALSE(pool.allocate(2).has_value());
  EXPECT_EQ(pool.num_free(), 1);  // the failed request took nothing
  auto b = pool.allocate(1);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(pool.num_free(), 0);
  EXPECT_TRUE(pool.allocate(0).has_value());
  pool.free(*a);
  pool.free(*b);
  EXPECT_EQ(pool.num_free(), 4);
  EXPECT_EQ(pool.num_used(), 0);
}

TEST(PagePool, SharedPagesFreedByLastHolder) {
  PagePool pool(3, 1);
  auto a = *pool.allocate(2);
  pool.retain(a);  // a second user (e.g. the prefix cache)
  EXPECT_EQ(pool.ref_count(a[0]), 2);
  pool.release(a);
  EXPECT_EQ(pool.num_free(), 1);  // still held once
  pool.retain(a[1]);
  pool.release(a[0]);
  EXPECT_EQ(pool.num_free(), 2);
  pool.release(a[1]);
  EXPECT_EQ(pool.num_free(), 2);
  pool.release(a[1]);
  EXPECT_EQ(pool.num_free(), 3);
}

TEST(PagePool, MisuseThrows) {
  PagePool pool(2, 4);
  auto a = *pool.allocate(1);
  EXPECT_THROW(pool.release(5), ds::Error);
  EXPECT_THROW(pool.release(-1), ds::Error);
  EXPECT_THROW(pool.retain(1), ds::Error);  // free page
  EXPECT_THROW(pool.allocate(-1), ds::Error);
  pool.free(a);
  EXPECT_THROW(pool.free(a), ds::Error);  // double free
  // A list freeing one page twice with one reference is refused as a whole.
  auto b = *pool.allocate(2);
  EXPECT_THROW(pool.free({b[0], b[0]}), ds::Error);
  EXPECT_EQ(pool.num_used(), 2);
  EXPECT_THROW(PagePool(2, 0), ds::Error);
  EXPECT_EQ(pool.pages_for(0), 0);
  EXPECT_EQ(pool.pages_for(4), 1);
  EXPECT_EQ(pool.pages_for(5), 2);
}
