#include "mm/locked_memory.h"

#include <sys/resource.h>

#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace nv2pt::mm {
namespace {

constexpr uint64_t k64K = 1 << 16;

TEST(LockedMemory, ChargeWithinLimit) {
  LockedMemory lm(MemlockPolicy::fixed(100 * k64K, false));
  ASSERT_TRUE(lm.charge(60));
  ASSERT_TRUE(lm.charge(40));  // exactly at the limit is allowed
  EXPECT_EQ(lm.locked_pages(), 100u);
}

TEST(LockedMemory, OverLimitWithoutCapIsEnomemAndChangesNothing) {
  LockedMemory lm(MemlockPolicy::fixed(100 * k64K, false));
  ASSERT_TRUE(lm.charge(60));
  auto r = lm.charge(41);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), kENOMEM);
  EXPECT_EQ(lm.locked_pages(), 60u);
}

TEST(LockedMemory, LimitIsRoundedDownToWholePages) {
  LockedMemory lm(MemlockPolicy::fixed(100 * k64K + 4096, false));
  EXPECT_FALSE(lm.charge(101));
  EXPECT_TRUE(lm.charge(100));
}

TEST(LockedMemory, OverLimitWithCapIpcLockIsCharged) {
  LockedMemory lm(MemlockPolicy::fixed(0, true));
  ASSERT_TRUE(lm.charge(1000));
  EXPECT_EQ(lm.locked_pages(), 1000u);
}

TEST(LockedMemory, PolicyIsReadAtEachCharge) {
  LockedMemory lm(MemlockPolicy::fixed(10 * k64K, false));
  ASSERT_TRUE(lm.charge(10));
  EXPECT_FALSE(lm.charge(1));
  lm.set_policy(MemlockPolicy::fixed(0, true));
  EXPECT_TRUE(lm.charge(1));
  EXPECT_EQ(lm.locked_pages(), 11u);
}

TEST(LockedMemory, UnchargeNeverGoesBelowZeroAndCountsTheBug) {
  LockedMemory lm(MemlockPolicy::fixed(0, true));
  ASSERT_TRUE(lm.charge(5));
  lm.uncharge(3);
  EXPECT_EQ(lm.locked_pages(), 2u);
  EXPECT_EQ(lm.underflows(), 0u);
  lm.uncharge(3);
  EXPECT_EQ(lm.locked_pages(), 0u);
  EXPECT_EQ(lm.underflows(), 1u);
}

TEST(LockedMemory, HugeChargeDoesNotWrap) {
  LockedMemory lm(MemlockPolicy::fixed(UINT64_MAX, true));
  ASSERT_TRUE(lm.charge(10));
  EXPECT_EQ(lm.charge(UINT64_MAX).error(), kENOMEM);
  EXPECT_EQ(lm.locked_pages(), 10u);
}

TEST(LockedMemory, ProcessPolicyFollowsSetrlimit) {
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_MEMLOCK, &saved), 0);
  rlimit lower = saved;
  lower.rlim_cur = saved.rlim_max == RLIM_INFINITY ? 8 * k64K : std::min<rlim_t>(saved.rlim_max, 8 * k64K);
  ASSERT_EQ(setrlimit(RLIMIT_MEMLOCK, &lower), 0);
  MemlockLimits limits = MemlockPolicy::current_process().read();
  EXPECT_EQ(limits.limit_bytes, lower.rlim_cur);
  EXPECT_EQ(limits.cap_ipc_lock, process_has_cap_ipc_lock());
  LockedMemory lm;  // the real process
  auto r = lm.charge(lower.rlim_cur / k64K + 1);
  EXPECT_EQ(r.has_value(), process_has_cap_ipc_lock()) << "root in CI has CAP_IPC_LOCK";
  ASSERT_EQ(setrlimit(RLIMIT_MEMLOCK, &saved), 0);
}

TEST(LockedMemory, ConcurrentChargesNeverPassTheLimit) {
  LockedMemory lm(MemlockPolicy::fixed(1000 * k64K, false));
  std::vector<std::thread> threads;
  std::atomic<uint64_t> granted{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i)
        if (lm.charge(1)) granted.fetch_add(1);
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(granted.load(), 1000u);
  EXPECT_EQ(lm.locked_pages(), 1000u);
}

}  // namespace
}  // namespace nv2pt::mm
