#include "base/fault_injection.h"

#include <gtest/gtest.h>

#include <thread>

namespace nv2pt {
namespace {

TEST(FailNth, DisarmedNeverFails) {
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(should_fail_allocation());
}

TEST(FailNth, FailsOnlyTheNthCheckOnTheArmingThread) {
  ScopedFailNth arm(3);
  EXPECT_FALSE(should_fail_allocation());
  EXPECT_FALSE(should_fail_allocation());
  bool other_thread_failed = false;
  std::thread([&] { other_thread_failed = should_fail_allocation(); }).join();
  EXPECT_FALSE(other_thread_failed);
  EXPECT_FALSE(arm.fired());
  EXPECT_TRUE(should_fail_allocation());
  EXPECT_TRUE(arm.fired());
  EXPECT_FALSE(should_fail_allocation());
  EXPECT_EQ(arm.checks(), 4u);
}

TEST(FailNth, DisarmsOnScopeExit) {
  { ScopedFailNth arm(1); }
  EXPECT_FALSE(should_fail_allocation());
}

}  // namespace
}  // namespace nv2pt
