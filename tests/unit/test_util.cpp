#include <gtest/gtest.h>

#include "util/error.h"

TEST(Util, CheckThrowsWithFormattedMessage) {
  try {
    DS_CHECK(1 + 1 == 3, "tensor '{}' has {} dims", "x", 3);
    FAIL() << "DS_CHECK did not throw";
  } catch (const ds::Error& e) {
    EXPECT_STREQ(e.what(), "tensor 'x' has 3 dims");
  }
  EXPECT_NO_THROW(DS_CHECK(true, "never"));
}
