#include "iommu/table_geometry.h"

#include <gtest/gtest.h>

namespace nv2pt::iommu {
namespace {

constexpr uint64_t KiB = 1ull << 10, MiB = 1ull << 20, GiB = 1ull << 30;

// docs/kernel/numbers.md#table-geometry-and-charge, row by row.
TEST(TableGeometry, DefaultWindow2GiB4KOneLevel) {
  auto g = compute_geometry(12, 2 * GiB, 1);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->block_bytes(), 4 * MiB);
  EXPECT_EQ(g->level_size(), 512 * KiB);
  EXPECT_EQ(accounting_bytes(12, 2 * GiB, 1), 8 * MiB);  // 128 pages of 64 KiB
  EXPECT_EQ(accounting_bytes(12, 2 * GiB, 1) / (64 * KiB), 128u);
  EXPECT_TRUE(check_allocatable(*g, kDefaultMaxAllocBytes));
}

TEST(TableGeometry, Window2GiB4KTwoLevels) {
  auto g = compute_geometry(12, 2 * GiB, 2);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->block_bytes(), 64 * KiB);
  EXPECT_EQ(g->level_size(), 8192u);
  EXPECT_EQ(accounting_bytes(12, 2 * GiB, 2), 2 * (4 * MiB + 64 * KiB));  // 8.125 MiB
}

TEST(TableGeometry, Window2To46Of64KOneLevelIsTooBigToAllocate) {
  auto g = compute_geometry(16, 1ull << 46, 1);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->block_bytes(), 8 * GiB);
  EXPECT_EQ(accounting_bytes(16, 1ull << 46, 1), 16384 * MiB);
  EXPECT_EQ(check_allocatable(*g, kDefaultMaxAllocBytes).error(), kENOMEM);
}

TEST(TableGeometry, Window2To46Of64KTwoLevels) {
  auto g = compute_geometry(16, 1ull << 46, 2);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->block_bytes(), 256 * KiB);
  EXPECT_EQ(g->level_size(), 32768u);
  const uint64_t charged = accounting_bytes(16, 1ull << 46, 2);
  EXPECT_EQ(charged, 16384 * MiB + 512 * KiB);  // 16384.5 MiB
  EXPECT_EQ(charged / (64 * KiB), 262152u);
}

TEST(TableGeometry, FiftyFiveBitRuleRefusesThreeToFiveLevels) {
  EXPECT_EQ(compute_geometry(16, 1ull << 46, 3).error(), kEINVAL);  // 13*3+16 = 55
  EXPECT_EQ(compute_geometry(16, 1ull << 46, 4).error(), kEINVAL);  // 68
  EXPECT_EQ(compute_geometry(16, 1ull << 46, 5).error(), kEINVAL);  // 81
  // The 3-level accounting value the kernel charges before it fails (and keeps): 8193.0625 MiB x 2.
  EXPECT_EQ(accounting_bytes(16, 1ull << 46, 3), 2 * (8192 * MiB + 1 * MiB + 64 * KiB));
}

TEST(TableGeometry, Window2To46Of4KTwoLevels) {
  auto g = compute_geometry(12, 1ull << 46, 2);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->block_bytes(), 1 * MiB);
  EXPECT_EQ(accounting_bytes(12, 1ull << 46, 2), 262146 * MiB);
}

TEST(TableGeometry, Window2To46Of16MFitsOnlyWithTwoLevels) {
  auto one = compute_geometry(24, 1ull << 46, 1);
  ASSERT_TRUE(one);
  EXPECT_EQ(one->block_bytes(), 32 * MiB);
  EXPECT_EQ(check_allocatable(*one, kDefaultMaxAllocBytes).error(), kENOMEM);
  EXPECT_EQ(accounting_bytes(24, 1ull << 46, 1), 64 * MiB);
  auto two = compute_geometry(24, 1ull << 46, 2);
  ASSERT_TRUE(two);
  EXPECT_EQ(two->block_bytes(), 64 * KiB);
  EXPECT_EQ(accounting_bytes(24, 1ull << 46, 2), 2 * (32 * MiB + 64 * KiB));  // 64.125 MiB
}

TEST(TableGeometry, RejectsBadArguments) {
  EXPECT_EQ(compute_geometry(16, 1ull << 46, 0).error(), kEINVAL);
  EXPECT_EQ(compute_geometry(16, 1ull << 46, 6).error(), kEINVAL);
  EXPECT_EQ(compute_geometry(16, 3ull << 40, 2).error(), kEINVAL);
  EXPECT_EQ(compute_geometry(16, 0, 2).error(), kEINVAL);
  EXPECT_EQ(compute_geometry(16, 32 * KiB, 1).error(), kEINVAL);
  EXPECT_EQ(accounting_bytes(16, 3ull << 40, 2), 0u);
  EXPECT_EQ(accounting_bytes(16, 1ull << 46, 0), 0u);
}

// docs/kernel/tce-tables.md#small-windows: a window needing less than one 64 KiB table page is widened; the real size
// is reported.
TEST(TableGeometry, SmallWindowIsWidened) {
  auto g = compute_geometry(16, 256 * MiB, 1);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->size(), 8192u);
  EXPECT_EQ(g->effective_window(), 512 * MiB);
}

// docs/kernel/numbers.md#flat-table-for-the-nvlink2-example: the seed's 4556 MB is a slip of 4656 MiB.
TEST(TableGeometry, ExactFitFlatTableIs4656MiB) {
  const uint64_t end = 0x244000000000ull + 0x2000000000ull;
  EXPECT_EQ(exact_fit_flat_bytes(end, 16), 4882169856u);
  EXPECT_EQ(exact_fit_flat_bytes(end, 16) / MiB, 4656u);
  EXPECT_EQ(exact_fit_flat_bytes(end, 16) % MiB, 0u);
  EXPECT_EQ(round_up_pow2(end), 1ull << 46);
  EXPECT_EQ(exact_fit_flat_bytes(round_up_pow2(end), 16), 8192 * MiB);
  EXPECT_EQ(exact_fit_flat_bytes(32 * GiB, 16), 4 * MiB);  // the "needed" figure: 16 + 16 GiB of leaves
}

}  // namespace
}  // namespace nv2pt::iommu
