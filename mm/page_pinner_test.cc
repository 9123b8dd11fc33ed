#include "mm/page_pinner.h"

#include <sys/mman.h>

#include <chrono>
#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include "mm/test_memory.h"

namespace nv2pt::mm {
namespace {

using testing::k1G;
using testing::k2M;
using testing::k64K;
using testing::TestMapping;

std::vector<uint64_t> hpas_of(const PagePinner& p, uint64_t ua, uint64_t pages) {
  std::vector<uint64_t> out(pages);
  EXPECT_TRUE(p.hpas(ua, out));
  return out;
}

TEST(PagePinner, ContiguousPinGetsContiguousFrames) {
  PagePinner p;
  TestMapping m(16 * k64K);
  ASSERT_TRUE(p.pin(m.ua(), 16, true));
  auto h = hpas_of(p, m.ua(), 16);
  for (size_t i = 1; i < h.size(); ++i) EXPECT_EQ(h[i], h[0] + i * k64K);
  EXPECT_EQ(p.pinned_pages(), 16u);
  EXPECT_EQ(p.extent_count(), 1u);
  EXPECT_EQ(p.free_frames(), p.total_frames() - 16);
  p.unpin(m.ua(), 16);
  EXPECT_EQ(p.pinned_pages(), 0u);
  EXPECT_EQ(p.free_frames(), p.total_frames());
}

// Found by the UAPI fuzzer: a pin starting in unpinned pages and reaching into pinned ones took fresh frames for
// the whole range (the walk for gaps started at the extent holding ua, and there was none), so extents overlapped
// and hpas() wrote past its output.
TEST(PagePinner, PinWhoseTailIsPinnedAlreadyTakesFramesOnlyForTheHead) {
  PagePinner p;
  TestMapping m(8 * k64K);
  ASSERT_TRUE(p.pin(m.ua() + 4 * k64K, 4, true));
  auto tail = hpas_of(p, m.ua() + 4 * k64K, 4);
  ASSERT_TRUE(p.pin(m.ua(), 8, true));
  EXPECT_EQ(p.pinned_pages(), 8u);
  EXPECT_EQ(p.free_frames(), p.total_frames() - 8);
  auto all = hpas_of(p, m.ua(), 8);
  EXPECT_EQ(std::vector<uint64_t>(all.begin() + 4, all.end()), tail);
  EXPECT_EQ(p.pin_count(m.ua()), 1u);
  EXPECT_EQ(p.pin_count(m.ua() + 4 * k64K), 2u);
  p.unpin(m.ua(), 8);
  p.unpin(m.ua() + 4 * k64K, 4);
  EXPECT_EQ(p.pinned_pages(), 0u);
  EXPECT_EQ(p.extent_count(), 0u);
  EXPECT_EQ(p.free_frames(), p.total_frames());
  EXPECT_EQ(p.unbalanced_unpins(), 0u);
}

TEST(PagePinner, SamePagePinnedTwiceKeepsItsHpa) {
  PagePinner p;
  TestMapping m(8 * k64K);
  ASSERT_TRUE(p.pin(m.ua(), 8, true));
  auto first = hpas_of(p, m.ua(), 8);
  ASSERT_TRUE(p.pin(m.ua() + 2 * k64K, 4, true));
  EXPECT_EQ(hpas_of(p, m.ua(), 8), first);
  EXPECT_EQ(p.pin_count(m.ua()), 1u);
  EXPECT_EQ(p.pin_count(m.ua() + 2 * k64K), 2u);
  EXPECT_EQ(p.pin_count(m.ua() + 5 * k64K), 2u);
  EXPECT_EQ(p.pin_count(m.ua() + 6 * k64K), 1u);
  EXPECT_EQ(p.pinned_pages(), 8u);
  p.unpin(m.ua(), 8);  // the inner pages keep one pin, and their hpa
  EXPECT_EQ(p.pinned_pages(), 4u);
  EXPECT_EQ(p.ua_to_hpa(m.ua() + 3 * k64K + 0x123), first[3] + 0x123);
  EXPECT_FALSE(p.ua_to_hpa(m.ua()));
  p.unpin(m.ua() + 2 * k64K, 4);
  EXPECT_EQ(p.pinned_pages(), 0u);
  EXPECT_EQ(p.extent_count(), 0u);
}

TEST(PagePinner, OverlappingPinsSplitAndMergeBack) {
  PagePinner p;
  TestMapping m(12 * k64K);
  ASSERT_TRUE(p.pin(m.ua(), 8, true));
  ASSERT_TRUE(p.pin(m.ua() + 4 * k64K, 8, true));  // 4 new pages, 4 shared
  EXPECT_EQ(p.pinned_pages(), 12u);
  EXPECT_EQ(p.extent_count(), 3u);  // [0,4) x1, [4,8) x2, [8,12) x1
  auto h = hpas_of(p, m.ua(), 12);
  p.unpin(m.ua() + 4 * k64K, 8);
  EXPECT_EQ(p.extent_count(), 1u) << "same count, contiguous frames: merged";
  EXPECT_EQ(hpas_of(p, m.ua(), 8), std::vector<uint64_t>(h.begin(), h.begin() + 8));
  p.unpin(m.ua(), 8);
  EXPECT_EQ(p.unbalanced_unpins(), 0u);
}

TEST(PagePinner, HpaStaysFixedWhilePinnedAndFramesAreReusedAfterUnpin) {
  PagePinner p;
  TestMapping a(4 * k64K), b(4 * k64K), c(4 * k64K);
  ASSERT_TRUE(p.pin(a.ua(), 4, true));
  ASSERT_TRUE(p.pin(b.ua(), 4, true));
  auto ha = hpas_of(p, a.ua(), 4), hb = hpas_of(p, b.ua(), 4);
  p.unpin(a.ua(), 4);
  EXPECT_EQ(hpas_of(p, b.ua(), 4), hb) << "b's frames do not move when a goes";
  ASSERT_TRUE(p.pin(c.ua(), 4, true));
  EXPECT_EQ(hpas_of(p, c.ua(), 4), ha) << "a's frames are free again and come first";
  EXPECT_EQ(p.hpa_to_ua(ha[2] + 5), c.ua() + 2 * k64K + 5);
  p.unpin(b.ua(), 4);
  p.unpin(c.ua(), 4);
}

TEST(PagePinner, UnmappedRangeIsEfault) {
  PagePinner p;
  TestMapping m(4 * k64K);
  const uint64_t ua = m.ua();
  m.punch(0, 4 * k64K);
  EXPECT_EQ(p.pin(ua, 4, true).error(), kEFAULT);
  EXPECT_EQ(p.pinned_pages(), 0u);
}

TEST(PagePinner, HoleAfterGoodPagesIsEfaultAndNothingStaysPinned) {
  PagePinner p;
  TestMapping m(8 * k64K);
  m.punch(6 * k64K, k64K);
  EXPECT_EQ(p.pin(m.ua(), 8, true).error(), kEFAULT);
  EXPECT_EQ(p.pinned_pages(), 0u);
  EXPECT_EQ(p.free_frames(), p.total_frames());
}

TEST(PagePinner, ReadOnlyMappingRefusesAWritePin) {
  PagePinner p;
  TestMapping m(4 * k64K, k64K, PROT_READ);
  EXPECT_EQ(p.pin(m.ua(), 4, true).error(), kEFAULT);
  ASSERT_TRUE(p.pin(m.ua(), 4, false)) << "a read pin is fine";
  p.unpin(m.ua(), 4);
}

TEST(PagePinner, FallbackWithoutMadvisePopulate) {
  PagePinner p;
  p.set_populate_fallback(true);
  TestMapping good(4 * k64K), ro(4 * k64K, k64K, PROT_READ), holed(4 * k64K);
  holed.punch(2 * k64K, k64K);
  good.bytes()[5] = 42;
  ASSERT_TRUE(p.pin(good.ua(), 4, true));
  EXPECT_EQ(good.bytes()[5], 42) << "touching must not change the client's bytes";
  EXPECT_EQ(p.pin(ro.ua(), 4, true).error(), kEFAULT);
  EXPECT_EQ(p.pin(holed.ua(), 4, true).error(), kEFAULT);
  EXPECT_EQ(p.pinned_pages(), 4u);
  p.unpin(good.ua(), 4);
}

// The fallback walks /proc/self/maps in blocks: a range over a thousand VMAs (every other 4 KiB page read-only,
// so none merge) spans several blocks, and lines cut at a block's end must be read whole.
TEST(PagePinner, FallbackWalksMoreMappingsThanOneReadHolds) {
  PagePinner p;
  p.set_populate_fallback(true);
  constexpr uint64_t kPages = 32;  // of 64 KiB: 512 pages of 4 KiB, 512 VMAs, far more than one 16 KiB read
  TestMapping m(kPages * k64K);
  for (uint64_t off = 0; off < m.len(); off += 2 * 4096)
    ASSERT_EQ(mprotect(m.bytes() + off, 4096, PROT_READ), 0);
  EXPECT_EQ(p.pin(m.ua(), kPages, true).error(), kEFAULT) << "every other page is read-only";
  ASSERT_TRUE(p.pin(m.ua(), kPages, false));
  EXPECT_EQ(p.pinned_pages(), kPages);
  p.unpin(m.ua(), kPages);
  m.punch((kPages - 1) * k64K + 4096, 4096);  // a hole in the last 64 KiB page, behind many lines
  EXPECT_EQ(p.pin(m.ua(), kPages, false).error(), kEFAULT);
  EXPECT_EQ(p.pinned_pages(), 0u);
}

TEST(PagePinner, SpecialMappingIsRefusedBeforeAnythingIsTouched) {
  PagePinner p;
  TestMapping m(8 * k64K);  // stands in for a GPU RAM mmap; never touched yet
  ASSERT_TRUE(p.add_special_mapping(m.ua() + 4 * k64K, 4 * k64K));
  EXPECT_EQ(p.add_special_mapping(m.ua() + 6 * k64K, k64K).error(), kEINVAL) << "overlaps";
  EXPECT_EQ(p.pin(m.ua() + 4 * k64K, 2, true).error(), kEFAULT);
  EXPECT_EQ(p.pin(m.ua(), 8, true).error(), kEFAULT) << "normal pages followed by the special ones";
  std::vector<unsigned char> resident(8 * k64K / 4096);
  ASSERT_EQ(mincore(m.bytes(), m.len(), resident.data()), 0);
  for (unsigned char r : resident) EXPECT_EQ(r & 1, 0) << "nothing was faulted in";
  EXPECT_EQ(p.pinned_pages(), 0u);
  ASSERT_TRUE(p.remove_special_mapping(m.ua() + 4 * k64K, 4 * k64K));
  ASSERT_TRUE(p.pin(m.ua(), 8, true));
  p.unpin(m.ua(), 8);
}

TEST(PagePinner, BadArguments) {
  PagePinner p;
  EXPECT_EQ(p.pin(0x10000 + 4096, 1, true).error(), kEINVAL);
  EXPECT_EQ(p.pin(0x10000, 0, true).error(), kEINVAL);
  EXPECT_EQ(p.pin(~uint64_t{0xFFFF}, 2, true).error(), kEINVAL) << "wraps";
  EXPECT_EQ(p.pin(0x10000, uint64_t{1} << 60, true).error(), kEINVAL) << "size overflows";
}

TEST(PagePinner, UnbalancedUnpinIsCountedAndChangesNothing) {
  PagePinner p;
  TestMapping m(4 * k64K);
  ASSERT_TRUE(p.pin(m.ua(), 2, true));
  p.unpin(m.ua(), 4);  // pages 2 and 3 were never pinned
  EXPECT_EQ(p.unbalanced_unpins(), 1u);
  EXPECT_EQ(p.pin_count(m.ua()), 1u);
  p.unpin(m.ua(), 2);
  EXPECT_EQ(p.pinned_pages(), 0u);
}

TEST(PagePinner, OutOfFramesIsEnomemAndNothingPinned) {
  PagePinner p({.ram = {{0, 8 * k64K}}});
  TestMapping m(16 * k64K);
  ASSERT_TRUE(p.pin(m.ua(), 4, true));
  EXPECT_EQ(p.pin(m.ua() + 4 * k64K, 8, true).error(), kENOMEM);
  EXPECT_EQ(p.pinned_pages(), 4u);
  EXPECT_EQ(p.free_frames(), 4u);
  p.unpin(m.ua(), 4);
}

TEST(PagePinner, DmaReachesTheClientsBytes) {
  PagePinner p;
  TestMapping m(4 * k64K);
  ASSERT_TRUE(p.pin(m.ua(), 4, true));
  const uint64_t hpa = *p.ua_to_hpa(m.ua() + k64K - 3);
  const char msg[] = "nvlink2";  // crosses the page boundary
  ASSERT_TRUE(p.dma_write(hpa, std::as_bytes(std::span(msg))));
  EXPECT_EQ(std::memcmp(m.bytes() + k64K - 3, msg, sizeof msg), 0);
  m.bytes()[3 * k64K] = 0x5a;
  std::byte back[1];
  ASSERT_TRUE(p.dma_read(*p.ua_to_hpa(m.ua() + 3 * k64K), back));
  EXPECT_EQ(back[0], std::byte{0x5a});
  p.unpin(m.ua(), 4);
}

TEST(PagePinner, DmaAcrossExtentsFollowsEachFrameRun) {
  // Fragment the frames so that one contiguous hpa run maps to two separate user ranges.
  PagePinner p({.ram = {{0, 4 * k64K}}});
  TestMapping a(2 * k64K), b(2 * k64K);
  ASSERT_TRUE(p.pin(a.ua(), 2, true));  // frames 0, 1
  ASSERT_TRUE(p.pin(b.ua(), 2, true));  // frames 2, 3
  std::vector<std::byte> pattern(2 * k64K, std::byte{0x77});
  ASSERT_TRUE(p.dma_write(k64K, pattern));  // frame 1 (a's page 1) and frame 2 (b's page 0)
  EXPECT_EQ(a.bytes()[k64K], 0x77);
  EXPECT_EQ(a.bytes()[0], 0);
  EXPECT_EQ(b.bytes()[k64K - 1], 0x77);
  EXPECT_EQ(b.bytes()[k64K], 0);
  p.unpin(a.ua(), 2);
  p.unpin(b.ua(), 2);
}

TEST(PagePinner, DmaOutsidePinnedRamIsEfaultWithNothingCopied) {
  PagePinner p({.ram = {{0, 4 * k64K}}});
  TestMapping m(2 * k64K);
  ASSERT_TRUE(p.pin(m.ua(), 2, true));
  std::vector<std::byte> data(3 * k64K, std::byte{1});
  EXPECT_EQ(p.dma_write(0, data).error(), kEFAULT) << "third frame is not pinned";
  EXPECT_EQ(m.bytes()[0], 0) << "checked before copying";
  std::byte one[1];
  EXPECT_EQ(p.dma_read(uint64_t{1} << 40, one).error(), kEFAULT);
  p.unpin(m.ua(), 2);
  EXPECT_EQ(p.dma_read(0, one).error(), kEFAULT) << "no DMA after unpin";
  EXPECT_FALSE(p.hpa_to_ua(0));
}

TEST(PagePinner, HugetlbRangeGetsAlignedContiguousFrames) {
  auto shifts = std::make_shared<FixedPageShiftSource>();
  PagePinner p({.ram = {{k64K, 64 * k2M}}, .page_shifts = shifts});
  TestMapping m(2 * k2M, k2M);
  shifts->set(m.ua(), 2 * k2M, 21);
  TestMapping small(k64K);
  ASSERT_TRUE(p.pin(small.ua(), 1, true));  // takes the lowest frame, so the next run must skip to alignment
  ASSERT_TRUE(p.pin(m.ua(), 64, true));
  EXPECT_EQ(*p.page_shift(m.ua(), 64), 21u);
  const uint64_t h0 = *p.ua_to_hpa(m.ua());
  EXPECT_EQ(h0 % k2M, 0u);
  EXPECT_EQ(*p.ua_to_hpa(m.ua() + k2M + k64K), h0 + k2M + k64K);
  EXPECT_EQ(p.hpa_page_shift(h0 + k2M), 21u);
  EXPECT_EQ(p.hpa_page_shift(*p.ua_to_hpa(small.ua())), 16u);
  p.unpin(m.ua(), 64);
  p.unpin(small.ua(), 1);
}

TEST(PagePinner, MixedHugeAndNormalPagesReportTheSmallestShift) {
  auto shifts = std::make_shared<FixedPageShiftSource>();
  PagePinner p({.page_shifts = shifts});
  TestMapping m(2 * k2M, k2M);
  shifts->set(m.ua(), k2M, 21);  // first half hugetlb, second half normal
  ASSERT_TRUE(p.pin(m.ua(), 64, true));
  EXPECT_EQ(*p.page_shift(m.ua(), 32), 21u);
  EXPECT_EQ(*p.page_shift(m.ua(), 64), 16u);
  p.unpin(m.ua(), 64);
}

TEST(PagePinner, PageAlreadyPinnedAsNormalKeepsItsFrameInsideAHugeRange) {
  auto shifts = std::make_shared<FixedPageShiftSource>();
  PagePinner p({.page_shifts = shifts});
  TestMapping m(k2M, k2M);
  shifts->set(m.ua(), k2M, 21);
  ASSERT_TRUE(p.pin(m.ua() + k64K, 1, true));  // 64K-aligned pin: no huge frames
  const uint64_t kept = *p.ua_to_hpa(m.ua() + k64K);
  ASSERT_TRUE(p.pin(m.ua(), 32, true));
  EXPECT_EQ(*p.ua_to_hpa(m.ua() + k64K), kept) << "hpa never changes while pinned";
  EXPECT_EQ(*p.page_shift(m.ua(), 32), 16u) << "frames are not one aligned 2 MiB run";
  p.unpin(m.ua(), 32);
  p.unpin(m.ua() + k64K, 1);
}

TEST(PagePinner, ProcessPageShiftSourceSeesNormalMemoryAsSmallPages) {
  ProcessPageShiftSource src;
  TestMapping m(k2M, k2M);
  EXPECT_TRUE(src.page_shifts(m.ua(), k2M).empty());
}

TEST(PagePinner, ProcessPageShiftSourceSeesRealHugetlbWhenAvailable) {
  void* p = mmap(nullptr, 2 * k2M, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
  if (p == MAP_FAILED) GTEST_SKIP() << "no hugetlb pages configured on this machine";
  const uint64_t ua = reinterpret_cast<uint64_t>(p);
  auto runs = ProcessPageShiftSource().page_shifts(ua, 2 * k2M);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].shift, 21u);
  munmap(p, 2 * k2M);
}

TEST(PagePinner, CostOfPinning1GiB) {
  PagePinner p;
  TestMapping m(k1G);
  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  ASSERT_TRUE(p.pin(m.ua(), k1G / k64K, true));  // faults in 1 GiB
  auto t1 = clock::now();
  std::vector<uint64_t> h(k1G / k64K);
  ASSERT_TRUE(p.hpas(m.ua(), h));
  p.unpin(m.ua(), k1G / k64K);
  auto t2 = clock::now();
  ASSERT_TRUE(p.pin(m.ua(), k1G / k64K, true));  // already resident: the model's own cost plus madvise's walk
  auto t3 = clock::now();
  p.unpin(m.ua(), k1G / k64K);
  auto t4 = clock::now();
  ASSERT_EQ(madvise(m.bytes(), k1G, MADV_POPULATE_WRITE), 0);  // the kernel's share of a resident pin
  auto t5 = clock::now();
  auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
  std::printf("[ cost     ] pin 1 GiB cold (fault-in): %.1f ms; hpas+unpin: %.2f ms; pin 1 GiB resident: %.2f ms, "
              "of which madvise alone: %.2f ms\n",
              ms(t1 - t0), ms(t2 - t1), ms(t3 - t2), ms(t5 - t4));
  EXPECT_LT(ms(t3 - t2), 1000.0);
}

}  // namespace
}  // namespace nv2pt::mm
