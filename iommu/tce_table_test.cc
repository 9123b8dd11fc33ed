#include "iommu/tce_table.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace nv2pt::iommu {
namespace {

constexpr uint64_t KiB = 1ull << 10, MiB = 1ull << 20, GiB = 1ull << 30;

std::unique_ptr<TceTable> make(unsigned page_shift, uint64_t window, unsigned levels, bool cache = true) {
  auto g = compute_geometry(page_shift, window, levels);
  EXPECT_TRUE(g);
  auto t = TceTable::create(*g, 0, {.userspace_cache = cache});
  EXPECT_TRUE(t);
  return std::move(*t);
}

TEST(TceTable, OnlyTopBlocksExistAfterCreation) {
  auto t = make(16, 1ull << 46, 2);
  EXPECT_EQ(t->allocated_bytes(), 512 * KiB);  // 256 KiB top block x (table + cache): docs/kernel/numbers.md
  EXPECT_EQ(t->allocated_blocks(), 2u);
  EXPECT_EQ(t->get(12345), 0u);
  EXPECT_EQ(t->allocated_bytes(), 512 * KiB);  // a read allocates nothing
}

TEST(TceTable, LevelsAreAllocatedOnDemand) {
  auto t = make(16, 1ull << 46, 2, /*cache=*/false);
  const uint64_t base = t->allocated_bytes();
  ASSERT_TRUE(t->exchange(5, 0x1230000, DmaDirection::kBidirectional));
  EXPECT_EQ(t->allocated_bytes(), base + 256 * KiB);
  ASSERT_TRUE(t->exchange(6, 0x1240000, DmaDirection::kBidirectional));  // same leaf
  EXPECT_EQ(t->allocated_bytes(), base + 256 * KiB);
  ASSERT_TRUE(t->exchange(32768, 0x1250000, DmaDirection::kToDevice));  // next leaf
  EXPECT_EQ(t->allocated_bytes(), base + 512 * KiB);
  EXPECT_EQ(t->get(5), 0x1230000u | kTceRead | kTceWrite);
  EXPECT_EQ(t->get(32768), 0x1250000u | kTceRead);
}

TEST(TceTable, EntriesAreBigEndianInMemory) {
  auto t = make(16, 1ull << 30, 1, false);
  ASSERT_TRUE(t->exchange(1, 0x10000, DmaDirection::kBidirectional));
  TceTable::Leaf leaf = t->hw_leaf(1, 1, false);
  ASSERT_NE(leaf.entries, nullptr);
  const uint64_t raw = leaf.entries->load();
  const auto* bytes = reinterpret_cast<const uint8_t*>(&raw);
  EXPECT_EQ(bytes[7], 0x03);  // perms in the last byte
  EXPECT_EQ(bytes[5], 0x01);  // 0x10000
}

// A write-only mapping is stored R|W, and reads back as bidirectional
// (docs/kernel/tce-tables.md#tce-format).
TEST(TceTable, WriteImpliesRead) {
  auto t = make(16, 1ull << 30, 1, false);
  auto first = t->exchange(3, 0x30000, DmaDirection::kFromDevice);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->direction, DmaDirection::kNone);
  EXPECT_EQ(t->get(3) & kTcePermMask, kTceRead | kTceWrite);
  auto second = t->exchange(3, 0x40000, DmaDirection::kToDevice);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->hpa, 0x30000u);
  EXPECT_EQ(second->direction, DmaDirection::kBidirectional);
}

TEST(TceTable, ClearingAMissingLeafAllocatesNothing) {
  auto t = make(16, 1ull << 46, 2, false);
  const uint64_t before = t->allocated_bytes();
  auto old = t->exchange(1ull << 20, 0, DmaDirection::kNone);
  ASSERT_TRUE(old);
  EXPECT_EQ(old->direction, DmaDirection::kNone);
  t->clear(0, 1ull << 25);
  EXPECT_EQ(t->allocated_bytes(), before);
}

TEST(TceTable, MisalignedHpaIsRefused) {
  auto t = make(16, 1ull << 30, 1, false);
  EXPECT_EQ(t->exchange(0, 0x1000, DmaDirection::kBidirectional).error(), kEINVAL);
}

TEST(TceTable, MissingLevelWithoutAllocIsENOMEM) {
  auto t = make(16, 1ull << 46, 2, false);
  EXPECT_EQ(t->exchange(7, 0x10000, DmaDirection::kBidirectional, /*alloc=*/false).error(), kENOMEM);
}

TEST(TceTable, LowerBlocksObeyTheAllocationLimit) {
  auto g = compute_geometry(16, 1ull << 46, 2);
  ASSERT_TRUE(g);
  EXPECT_EQ(TceTable::create(*g, 0, {.max_alloc_bytes = 128 * KiB}).error(), kENOMEM);
}

TEST(TceTable, LeafSpansEndAtTheBlockBoundary) {
  auto t = make(16, 1ull << 46, 2, false);
  TceTable::Leaf leaf = t->hw_leaf(32760, UINT64_MAX, true);
  ASSERT_NE(leaf.entries, nullptr);
  EXPECT_EQ(leaf.count, 8u);
  auto flat = make(16, 1 * GiB, 1, false);
  EXPECT_EQ(flat->hw_leaf(10, UINT64_MAX, false).count, flat->size() - 10);
}

// Every writer of a valid entry widens the written range first; clears neither widen nor narrow it, and clear()
// looks only inside it.
TEST(TceTable, WrittenRangeCoversEveryValidEntry) {
  auto t = make(16, 1 * GiB, 1);  // one flat block of 16 Ki entries
  using Span = std::pair<uint64_t, uint64_t>;
  auto range = [&] { return Span(t->written_range().first, t->written_range().end); };
  EXPECT_EQ(t->written_range().first, t->written_range().end) << "empty after creation";
  ASSERT_TRUE(t->exchange(100, 0x10000, DmaDirection::kToDevice));
  EXPECT_EQ(range(), Span(100, 101));
  TceTable::Leaf leaf = t->hw_leaf(5000, 10, /*alloc=*/true);
  ASSERT_NE(leaf.entries, nullptr);
  EXPECT_EQ(leaf.count, 10u) << "no more than asked for";
  EXPECT_EQ(range(), Span(100, 5010));
  leaf.entries[9].store(to_be(0x20000 | kTceRead));
  t->count_live(1);
  (void)t->hw_leaf(9000, 10, /*alloc=*/false);  // a clearing writer
  ASSERT_TRUE(t->exchange(12000, 0, DmaDirection::kNone));
  EXPECT_EQ(range(), Span(100, 5010)) << "clears do not widen it";
  EXPECT_EQ(t->live_entries(), 2u);
  t->clear(0, t->size());
  EXPECT_EQ(t->live_entries(), 0u);
  EXPECT_EQ(t->get(5009), 0u);
  EXPECT_EQ(range(), Span(100, 5010)) << "nor do clears narrow it";
  t->clear(UINT64_MAX - 1, 8);  // an end past the top of the index space saturates
  ASSERT_TRUE(t->exchange(3, 0x30000, DmaDirection::kToDevice));
  EXPECT_EQ(range(), Span(3, 5010));
}

TEST(TceTable, ThreeLevelWalk) {
  auto g = compute_geometry(12, 1ull << 40, 3);  // 28 entry bits -> 10 per level, 64 KiB blocks (13 bits)
  ASSERT_TRUE(g);
  auto t = TceTable::create(*g, 0, {.userspace_cache = false});
  ASSERT_TRUE(t);
  const uint64_t far = (1ull << 28) - 1;
  ASSERT_TRUE((*t)->exchange(far, 0x5000, DmaDirection::kToDevice));
  ASSERT_TRUE((*t)->exchange(0, 0x6000, DmaDirection::kToDevice));
  EXPECT_EQ((*t)->get(far), 0x5000u | kTceRead);
  EXPECT_EQ((*t)->get(0), 0x6000u | kTceRead);
  EXPECT_EQ((*t)->get(far - 1), 0u);
  EXPECT_EQ((*t)->allocated_blocks(), 1u + 2u + 2u);
}

// Threads writing entries under the same missing level end with one block, no leak
// (pnv_tce's cmpxchg: docs/kernel/tce-tables.md#on-demand-levels).
TEST(TceTable, ConcurrentLevelAllocationHasOneWinner) {
  for (int round = 0; round < 50; ++round) {
    auto t = make(16, 1ull << 46, 2, false);
    const uint64_t before = t->allocated_blocks();
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i) {
      threads.emplace_back([&t, i] {
        ASSERT_TRUE(t->exchange(100 + i, (0x100 + i) * 0x10000ull, DmaDirection::kBidirectional));
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(t->allocated_blocks(), before + 1);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(t->get(100 + i), ((0x100 + i) * 0x10000ull) | 3);
  }
}

// docs/kernel/numbers.md#on-demand-levels: mapping 16 GiB at 0 and 16 GiB at 0x244000000000 touches 16 leaf blocks:
// 4.25 MiB per tree.
TEST(TceTable, OnDemandMemoryForTheSeedLayout) {
  auto t = make(16, 1ull << 46, 2);
  for (uint64_t base : {0ull, 0x244000000000ull}) {
    for (uint64_t off = 0; off < 16 * GiB; off += 2 * GiB) {
      const uint64_t index = (base + off) >> 16;
      ASSERT_NE(t->hw_leaf(index, 1, true).entries, nullptr);
      ASSERT_NE(t->cache_leaf(index, true).entries, nullptr);
    }
  }
  EXPECT_EQ(t->allocated_bytes(), 2 * (4 * MiB + 256 * KiB));
}

}  // namespace
}  // namespace nv2pt::iommu

namespace nv2pt::iommu {
namespace {

TEST(TceTable, ForEachLeafVisitsOnlyAllocatedLeavesInOrder) {
  auto g = compute_geometry(16, 1ull << 46, 2);
  auto t = TceTable::create(*g, 0, {.userspace_cache = false});
  ASSERT_TRUE(t);
  ASSERT_TRUE((*t)->exchange(5 * 32768 + 3, 0x10000, DmaDirection::kToDevice));
  ASSERT_TRUE((*t)->exchange(1 * 32768, 0x20000, DmaDirection::kToDevice));
  std::vector<uint64_t> firsts;
  (*t)->for_each_leaf(false, [&](uint64_t first, TceTable::Leaf leaf) {
    firsts.push_back(first);
    EXPECT_EQ(leaf.count, 32768u);
  });
  EXPECT_EQ(firsts, (std::vector<uint64_t>{32768, 5 * 32768}));
}

TEST(TceTable, GenerationMovesWithEveryWriterAndUidsAreUnique) {
  auto t = make(16, 1ull << 46, 2);
  auto other = make(16, 1ull << 46, 2);
  EXPECT_NE(t->uid(), other->uid());
  uint64_t g = t->generation();
  auto moved = [&] {
    const uint64_t now = t->generation();
    const bool m = now != g;
    g = now;
    return m;
  };
  EXPECT_EQ(t->get(7), 0u);
  (void)t->cached_ua(7);
  EXPECT_FALSE(moved()) << "readers change nothing";
  ASSERT_TRUE(t->exchange(7, 0x10000, DmaDirection::kBidirectional));
  EXPECT_TRUE(moved());
  t->clear(0, 8);
  EXPECT_TRUE(moved());
  (void)t->hw_leaf(7, 1, false);
  EXPECT_TRUE(moved()) << "a leaf handed out may be written";
  (void)t->cache_leaf(7, false);
  EXPECT_TRUE(moved());
  std::vector<uint64_t> seen;
  t->for_each_leaf(false, [&](uint64_t first, TceTable::Leaf) { seen.push_back(first); });
  EXPECT_FALSE(moved()) << "the checker's walk changes nothing";
  const uint64_t old_uid = t->uid();
  t.reset();
  EXPECT_NE(make(16, 1ull << 46, 2)->uid(), old_uid) << "a new table never takes a freed one's uid";
}

}  // namespace
}  // namespace nv2pt::iommu
