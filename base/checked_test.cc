#include "base/checked.h"

#include <gtest/gtest.h>

#include "base/errno.h"

namespace nv2pt {
namespace {

TEST(Checked, AddDetectsWrap) {
  EXPECT_EQ(checked_add(1, 2), 3u);
  EXPECT_EQ(checked_add(UINT64_MAX, 1), std::nullopt);
  EXPECT_EQ(checked_add(UINT64_MAX - 5, 5), UINT64_MAX);
}

TEST(Checked, MulAndShiftDetectLostBits) {
  EXPECT_EQ(checked_mul(1ull << 32, 1ull << 31), 1ull << 63);
  EXPECT_EQ(checked_mul(1ull << 32, 1ull << 32), std::nullopt);
  EXPECT_EQ(checked_shl(9, 40), 9ull << 40);
  EXPECT_EQ(checked_shl(1ull << 24, 40), std::nullopt);
  EXPECT_EQ(checked_shl(1, 64), std::nullopt);
  EXPECT_EQ(checked_shl(0, 64), 0u);
}

TEST(Checked, Alignment) {
  EXPECT_TRUE(is_aligned(0x30000, 0x10000));
  EXPECT_FALSE(is_aligned(0x31000, 0x10000));
  EXPECT_EQ(align_down(0x31234, 0x10000), 0x30000u);
  EXPECT_EQ(align_up(0x31234, 0x10000), 0x40000u);
  EXPECT_EQ(align_up(UINT64_MAX - 3, 0x10000), std::nullopt);
  EXPECT_EQ(natural_shift(0x10000 | 0x40000000), 16u);
  EXPECT_EQ(natural_shift(0), 64u);
}

TEST(Checked, Overlap) {
  EXPECT_TRUE(ranges_overlap(0, 10, 9, 1));
  EXPECT_FALSE(ranges_overlap(0, 10, 10, 1));
}

Result<int> half(int v) {
  if (v % 2) return fail(kEINVAL);
  return v / 2;
}

Result<int> quarter(int v) {
  int h = NV2PT_TRY(half(v));
  return NV2PT_TRY(half(h));
}

TEST(Errno, TryPropagatesTheFirstError) {
  EXPECT_EQ(quarter(8), 2);
  EXPECT_EQ(quarter(6).error(), kEINVAL);
  EXPECT_EQ(errno_name(kEINVAL), "EINVAL");
  EXPECT_EQ(errno_name(kENOTTY), "ENOTTY");
}

}  // namespace
}  // namespace nv2pt
