#include "mm/registered_region.h"

#include <gtest/gtest.h>

namespace nv2pt::mm {
namespace {

constexpr uint64_t k64K = 1 << 16;
constexpr uint64_t kUa = uint64_t{0x7f00} << 32;  // 2^47-ish, naturally aligned far above any shift used here

RegisteredRegion regular4(unsigned shift = 16) {
  // Four pages whose hpas are deliberately not contiguous, the last one with its dirty bit set.
  return RegisteredRegion(kUa, 4, shift, {0x100000, 0x250000, 0x300000, 0x410000 | 1});
}

TEST(RegisteredRegion, RegularUaToHpaKeepsTheOffsetInThePage) {
  auto r = regular4();
  EXPECT_EQ(*r.ua_to_hpa(kUa, 12), 0x100000u);
  EXPECT_EQ(*r.ua_to_hpa(kUa + k64K + 0x1234, 12), 0x251234u);
  EXPECT_EQ(*r.ua_to_hpa(kUa + 3 * k64K + 8, 16), 0x410008u) << "dirty bit masked off";
}

TEST(RegisteredRegion, UaToHpaOutsideTheRegionIsEfault) {
  auto r = regular4();
  EXPECT_EQ(r.ua_to_hpa(kUa + 4 * k64K, 12).error(), kEFAULT);
  EXPECT_EQ(r.ua_to_hpa(kUa - 1, 12).error(), kEFAULT);
}

TEST(RegisteredRegion, IommuPageLargerThanTheRegionsPageShiftIsEfault) {
  auto r = regular4(16);
  EXPECT_TRUE(r.ua_to_hpa(kUa, 16));
  EXPECT_EQ(r.ua_to_hpa(kUa, 21).error(), kEFAULT);
  EXPECT_EQ(r.ua_to_hpa(kUa, 24).error(), kEFAULT);
}

TEST(RegisteredRegion, DeviceUaToHpaIsLinear) {
  RegisteredRegion r(kUa, 16, uint64_t{0x0400} << 32);
  EXPECT_TRUE(r.is_device());
  EXPECT_EQ(*r.ua_to_hpa(kUa + 5 * k64K + 0x10, 16), (uint64_t{0x0400} << 32) + 5 * k64K + 0x10);
  EXPECT_EQ(r.ua_to_hpa(kUa + 16 * k64K, 16).error(), kEFAULT);
}

TEST(RegisteredRegion, DevicePageShiftIncludesTheUserAddressAlignment) {
  const uint64_t gpu = uint64_t{0x0400} << 32;  // 2^42 aligned
  const uint64_t size_pages = (uint64_t{128} << 30) >> 16;
  // An mmap only 64 KiB aligned: the kernel would say 37 (size) here, we say 16.
  RegisteredRegion misaligned(kUa + k64K, size_pages, gpu);
  EXPECT_EQ(misaligned.page_shift(), 16u);
  EXPECT_EQ(misaligned.ua_to_hpa(kUa + k64K, 24).error(), kEFAULT);
  RegisteredRegion aligned(kUa, size_pages, gpu);
  EXPECT_EQ(aligned.page_shift(), 37u);
  EXPECT_EQ(RegisteredRegion::device_page_shift(kUa + (uint64_t{1} << 24), size_pages, gpu), 24u);
}

TEST(RegisteredRegion, RegularPageShiftIsTheMinimumOverPages) {
  const uint64_t ua2m = uint64_t{1} << 41;
  EXPECT_EQ(RegisteredRegion::regular_page_shift(ua2m, 64, 21), 21u);
  EXPECT_EQ(RegisteredRegion::regular_page_shift(ua2m, 64, 16), 16u) << "one normal page is enough";
  EXPECT_EQ(RegisteredRegion::regular_page_shift(ua2m, 48, 21), 20u) << "3 MiB: the size's alignment caps it";
  EXPECT_EQ(RegisteredRegion::regular_page_shift(ua2m + k64K, 32, 30), 16u);
}

TEST(RegisteredRegion, MappedDecNeverGoesBelowOne) {
  auto r = regular4();
  EXPECT_EQ(r.mapped(), 1u);
  ASSERT_TRUE(r.mapped_inc());
  ASSERT_TRUE(r.mapped_inc());
  EXPECT_EQ(r.mapped(), 3u);
  r.mapped_dec();
  r.mapped_dec();
  r.mapped_dec();
  EXPECT_EQ(r.mapped(), 1u);
  EXPECT_EQ(r.used(), 1u);
}

TEST(RegisteredRegion, BatchedMappedCountsNeverGoBelowOne) {
  auto r = regular4();
  ASSERT_TRUE(r.mapped_inc());
  r.mapped_add(9);
  EXPECT_EQ(r.mapped(), 11u);
  r.mapped_sub(4);
  EXPECT_EQ(r.mapped(), 7u);
  r.mapped_sub(100);
  EXPECT_EQ(r.mapped(), 1u) << "the registration's own count stays";
  r.mapped_sub(1);
  EXPECT_EQ(r.mapped(), 1u);
}

TEST(RegisteredRegion, ContainsRejectsEmptyAndWrappingRanges) {
  auto r = regular4();
  EXPECT_TRUE(r.contains(kUa, 4 * k64K));
  EXPECT_TRUE(r.contains(kUa + 4 * k64K - 1, 1));
  EXPECT_FALSE(r.contains(kUa + 4 * k64K, 1));
  EXPECT_FALSE(r.contains(kUa + 4 * k64K + 1, 0));
  EXPECT_FALSE(r.contains(kUa, 0));
  EXPECT_FALSE(r.contains(kUa + k64K, ~uint64_t{0}));
  EXPECT_FALSE(r.contains(kUa - 1, 2));
}

TEST(RegisteredRegion, MarkDirtySetsBitZeroOnlyForRegularMemory) {
  auto r = regular4();
  EXPECT_FALSE(r.is_dirty(kUa + k64K));
  r.mark_dirty(kUa + k64K + 77);
  EXPECT_TRUE(r.is_dirty(kUa + k64K));
  EXPECT_EQ(*r.ua_to_hpa(kUa + k64K, 16), 0x250000u) << "dirty bit never reaches a TCE";
  EXPECT_EQ(r.page_hpa(1), 0x250000u);
  r.mark_dirty(kUa + 100 * k64K);  // outside: ignored
  RegisteredRegion dev(kUa, 4, 0x1000000);
  dev.mark_dirty(kUa);
  EXPECT_FALSE(dev.is_dirty(kUa));
}

TEST(RegisteredRegion, ContainsAndEnd) {
  auto r = regular4();
  EXPECT_EQ(r.end(), kUa + 4 * k64K);
  EXPECT_TRUE(r.contains(kUa, 4 * k64K));
  EXPECT_TRUE(r.contains(kUa + 3 * k64K, k64K));
  EXPECT_FALSE(r.contains(kUa + 3 * k64K, k64K + 1));
  EXPECT_FALSE(r.contains(kUa - k64K, k64K));
  EXPECT_FALSE(r.contains(kUa, 0));
  EXPECT_FALSE(r.contains(kUa, UINT64_MAX));
}

}  // namespace
}  // namespace nv2pt::mm
