#include "mm/frame_allocator.h"

#include <gtest/gtest.h>

namespace nv2pt::mm {
namespace {

constexpr uint64_t k64K = 1 << 16;
constexpr uint64_t k2M = 1 << 21;

TEST(FrameAllocator, FirstFitFromTheLowestAddress) {
  PhysRange ram[] = {{0, 64 * k64K}};
  FrameAllocator fa(ram);
  EXPECT_EQ(fa.total_pages(), 64u);
  EXPECT_EQ(fa.allocate_contiguous(4, 16), 0u);
  EXPECT_EQ(fa.allocate_contiguous(4, 16), 4 * k64K);
  EXPECT_EQ(fa.free_pages(), 56u);
}

TEST(FrameAllocator, RangesAreTrimmedToFrames) {
  PhysRange ram[] = {{100, 3 * k64K}};  // [100, 196708) holds 2 whole frames, from 64K
  FrameAllocator fa(ram);
  EXPECT_EQ(fa.total_pages(), 2u);
  EXPECT_EQ(fa.allocate_contiguous(1, 16), k64K);
}

TEST(FrameAllocator, AlignedRunsForHugePages) {
  PhysRange ram[] = {{0, 8 * k2M}};
  FrameAllocator fa(ram);
  ASSERT_EQ(fa.allocate_contiguous(1, 16), 0u);
  auto hpa = fa.allocate_contiguous(64, 21);  // 4 MiB aligned to 2 MiB
  ASSERT_TRUE(hpa);
  EXPECT_EQ(*hpa, k2M);
  // The frames between 64K and 2M are still free and used first by the next small allocation.
  EXPECT_EQ(fa.allocate_contiguous(1, 16), k64K);
}

TEST(FrameAllocator, FreeMergesAndIsReusedFirst) {
  PhysRange ram[] = {{0, 64 * k64K}};
  FrameAllocator fa(ram);
  auto a = fa.allocate_contiguous(8, 16), b = fa.allocate_contiguous(8, 16);
  ASSERT_TRUE(a && b);
  EXPECT_TRUE(fa.free(*a, 8));
  EXPECT_EQ(fa.allocate_contiguous(8, 16), *a);
  EXPECT_TRUE(fa.free(*a, 8));
  EXPECT_TRUE(fa.free(*b, 8));
  EXPECT_EQ(fa.free_pages(), 64u);
  EXPECT_EQ(fa.allocate_contiguous(64, 16), 0u) << "frees merged back into one run";
}

TEST(FrameAllocator, ScatteredRunsWhenFragmented) {
  PhysRange ram[] = {{0, 8 * k64K}};
  FrameAllocator fa(ram);
  std::vector<uint64_t> one;
  for (int i = 0; i < 8; ++i) one.push_back(*fa.allocate_contiguous(1, 16));
  fa.free(one[1], 1);
  fa.free(one[3], 1);
  fa.free(one[4], 1);
  EXPECT_FALSE(fa.allocate_contiguous(3, 16));
  auto runs = fa.allocate(3);
  ASSERT_TRUE(runs);
  ASSERT_EQ(runs->size(), 2u);
  EXPECT_EQ((*runs)[0].hpa, one[1]);
  EXPECT_EQ((*runs)[0].pages, 1u);
  EXPECT_EQ((*runs)[1].hpa, one[3]);
  EXPECT_EQ((*runs)[1].pages, 2u);
  EXPECT_FALSE(fa.allocate(1)) << "out of frames";
}

TEST(FrameAllocator, OutOfFramesTakesNothing) {
  PhysRange ram[] = {{0, 4 * k64K}};
  FrameAllocator fa(ram);
  EXPECT_FALSE(fa.allocate(5));
  EXPECT_EQ(fa.free_pages(), 4u);
}

TEST(FrameAllocator, DoubleFreeAndNonRamAreRejected) {
  PhysRange ram[] = {{0, 4 * k64K}};
  FrameAllocator fa(ram);
  auto a = fa.allocate_contiguous(2, 16);
  EXPECT_TRUE(fa.free(*a, 2));
  EXPECT_FALSE(fa.free(*a, 1));
  EXPECT_FALSE(fa.free(100 * k64K, 1));
  EXPECT_EQ(fa.free_pages(), 4u);
}

TEST(FrameAllocator, SeveralRamRanges) {
  PhysRange ram[] = {{0, 2 * k64K}, {uint64_t{0x2000} << 32, 2 * k64K}};  // chip 0 and chip 1 style
  FrameAllocator fa(ram);
  EXPECT_EQ(fa.total_pages(), 4u);
  EXPECT_TRUE(fa.is_ram(k64K));
  EXPECT_FALSE(fa.is_ram(2 * k64K));
  auto runs = fa.allocate(3);
  ASSERT_TRUE(runs);
  ASSERT_EQ(runs->size(), 2u);
  EXPECT_EQ((*runs)[1].hpa, uint64_t{0x2000} << 32);
}

}  // namespace
}  // namespace nv2pt::mm
