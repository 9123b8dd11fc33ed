#include "cli/window_plan.h"

#include <gtest/gtest.h>

namespace nv2pt::cli {
namespace {

constexpr uint64_t KiB = 1ull << 10, MiB = 1ull << 20, GiB = 1ull << 30;

PlanInput seed_layout() {
  PlanInput in;
  in.ranges = {{"ram", 0, 16 * GiB}, {"gpu 0035:05:00.0", 0x244000000000ull, 16 * GiB}};
  in.page_shift = 16;
  return in;
}

// docs/kernel/numbers.md#flat-table-for-the-nvlink2-example: the seed's example with its 128 GiB GPU window.
TEST(WindowPlan, SeedExampleExactFitIs4656MiB) {
  PlanInput in = seed_layout();
  in.ranges[1].size = 128 * GiB;
  auto plan = make_plan(in);
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->end, 0x246000000000ull);
  EXPECT_EQ(plan->exact_fit_flat_bytes, 4882169856ull);
  EXPECT_EQ(plan->exact_fit_flat_bytes, 4656 * MiB);
  EXPECT_EQ(plan->window_size, 1ull << 46);
  EXPECT_EQ(plan->pow2_flat_bytes, 8192 * MiB);
}

// docs/kernel/numbers.md: the table-geometry rows for the 2^46 window, 64K pages, and the on-demand figure.
TEST(WindowPlan, PerLevelFiguresFor64KPages) {
  auto plan = make_plan(seed_layout());
  ASSERT_TRUE(plan);
  ASSERT_EQ(plan->levels.size(), 5u);
  const LevelPlan& one = plan->levels[0];
  EXPECT_FALSE(one.allowed);
  EXPECT_NE(one.refusal.find("ENOMEM"), std::string::npos);
  EXPECT_EQ(one.charged_bytes, 16384 * MiB);
  const LevelPlan& two = plan->levels[1];
  EXPECT_TRUE(two.allowed);
  EXPECT_EQ(two.geometry->block_bytes(), 256 * KiB);
  EXPECT_EQ(two.charged_bytes, 16384 * MiB + 512 * KiB);
  EXPECT_EQ(two.charged_bytes / (64 * KiB), 262152u);
  EXPECT_EQ(two.allocated_at_creation, 512 * KiB);
  EXPECT_EQ(two.leaf_blocks_touched, 16u);
  EXPECT_EQ(two.allocated_for_layout, 2 * (4 * MiB + 256 * KiB));  // 8.5 MiB
  for (unsigned l = 3; l <= 5; ++l) {
    EXPECT_FALSE(plan->levels[l - 1].allowed);
    EXPECT_NE(plan->levels[l - 1].refusal.find("EINVAL"), std::string::npos);
  }
  EXPECT_EQ(plan->levels[2].charged_bytes, 2 * (8192 * MiB + 1 * MiB + 64 * KiB));
  EXPECT_EQ(plan->leaf_bytes_needed, 4 * MiB);
}

// docs/kernel/numbers.md: the 4K rows and the on-demand figure with 4K pages.
TEST(WindowPlan, PerLevelFiguresFor4KPages) {
  PlanInput in = seed_layout();
  in.page_shift = 12;
  auto plan = make_plan(in);
  ASSERT_TRUE(plan);
  const LevelPlan& two = plan->levels[1];
  ASSERT_TRUE(two.allowed);
  EXPECT_EQ(two.geometry->block_bytes(), 1 * MiB);
  EXPECT_EQ(two.charged_bytes, 262146 * MiB);
  EXPECT_EQ(two.allocated_at_creation, 2 * MiB);
  EXPECT_EQ(plan->leaf_bytes_needed, 64 * MiB);
}

// docs/kernel/numbers.md#kvm: a 16 MiB guest page over 64K host TCEs.
TEST(WindowPlan, KvmSixteenMegGuestPagesAre256HostTces) {
  auto plan = make_plan(seed_layout());
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->kvm.subpages, 256u);
  EXPECT_EQ(plan->kvm.guest_entries, 1ull << 22);
  EXPECT_EQ(plan->kvm.host_tces_per_indirect_call, 131072u);
  // 512 pages of guest TCEs (32 MiB) plus the descriptor's page.
  EXPECT_EQ(plan->kvm.guest_charged_bytes, 32 * MiB + 64 * KiB);
  EXPECT_EQ(plan->kvm.guest_allocated_for_layout, 2 * 64 * KiB);
}

TEST(WindowPlan, DefaultWindowFitsOneLevel) {
  PlanInput in;
  in.ranges = {{"ram", 0, 2 * GiB}};
  in.page_shift = 12;
  auto plan = make_plan(in);
  ASSERT_TRUE(plan);
  EXPECT_TRUE(plan->levels[0].allowed);
  EXPECT_EQ(plan->levels[0].charged_bytes, 8 * MiB);
  EXPECT_EQ(plan->levels[0].allocated_for_layout, 8 * MiB);
  EXPECT_EQ(plan->levels[0].leaf_blocks_touched, 1u);
}

TEST(WindowPlan, RejectsBadLayouts) {
  PlanInput in = seed_layout();
  in.ranges[1].start = 8 * GiB;  // overlaps RAM
  EXPECT_EQ(make_plan(in).error(), kEINVAL);
  in = seed_layout();
  in.ranges[0].size = 0;
  EXPECT_EQ(make_plan(in).error(), kEINVAL);
  in = seed_layout();
  in.ranges[0].start = 0x1000;  // not 64K aligned
  EXPECT_EQ(make_plan(in).error(), kEINVAL);
  in = seed_layout();
  in.ranges[0].start = ~0ull - 0xFFFF;  // wraps
  EXPECT_EQ(make_plan(in).error(), kEINVAL);
  in = seed_layout();
  in.ranges.clear();
  EXPECT_EQ(make_plan(in).error(), kEINVAL);
  in = seed_layout();
  in.page_shift = 11;
  EXPECT_EQ(make_plan(in).error(), kEINVAL);
}

}  // namespace
}  // namespace nv2pt::cli
