#include "base/bounded_log.h"

#include <cstdint>

#include <gtest/gtest.h>

namespace nv2pt {
namespace {

TEST(BoundedLog, KeepsTheLatestOldestFirstAndCountsThemAll) {
  BoundedLog<uint64_t, 4> log;
  EXPECT_TRUE(log.entries().empty());
  for (uint64_t i = 0; i < 3; ++i) log.add(i);
  EXPECT_EQ(log.entries(), (std::vector<uint64_t>{0, 1, 2}));
  for (uint64_t i = 3; i < 10; ++i) log.add(i);
  EXPECT_EQ(log.entries(), (std::vector<uint64_t>{6, 7, 8, 9})) << "the six oldest went";
  EXPECT_EQ(log.count(), 10u);
}

}  // namespace
}  // namespace nv2pt
