// The sPAPR TCE container's MAP_DMA and UNMAP_DMA: v2 over pre-registered memory (argument checks, mapped counts,
// GPU RAM, rollback) and v1 with its pins, and the backing page size a large IOMMU page needs.
#include "vfio/spapr_tce_iommu.h"

#include <gtest/gtest.h>

#include "vfio/spapr_tce_test_fixture.h"

namespace nv2pt::vfio {
namespace {

using namespace testing;

// The fuzzer checks after every call with a cache of each window's walk: a table written since (by any writer, here
// one that bypasses the container) is walked again, and the cached check reports what the full check reports.
TEST_F(V2, CachedInvariantCheckWalksATableAgainOnceItChanged) {
  ClientMemory m(2 * MiB);
  ASSERT_TRUE(reg(m.ua(), 2 * MiB));
  qemu_windows();
  ASSERT_TRUE(map(kWindow1, m.ua(), 1 * MiB));
  InvariantCache cache;
  auto cached = [&] { return check_invariants(as, {&iommu()}, 0, &cache); };
  ASSERT_TRUE(cached().ok()) << cached().to_string();
  ASSERT_TRUE(cached().ok());  // unchanged: from the cache
  EXPECT_EQ(cache.walks.size(), 2u);
  // A TCE made valid behind the container's back: no cached user address, no live count, no mapped count.
  auto& table = const_cast<iommu::TceTable&>(window(1));
  iommu::TceTable::Leaf leaf = table.hw_leaf(100, 1, true);
  leaf.entries->store(iommu::to_be(0x10000 | iommu::kTceRead), std::memory_order_relaxed);
  const InvariantReport full = check_invariants(as, {&iommu()});
  const InvariantReport from_cache = cached();
  EXPECT_FALSE(from_cache.ok());
  EXPECT_EQ(from_cache.violations, full.violations);
  leaf.entries->store(0, std::memory_order_relaxed);
  (void)table.hw_leaf(100, 1, false);  // the writer's next call
  EXPECT_TRUE(cached().ok()) << cached().to_string();
  ASSERT_TRUE(unmap(kWindow1, 1 * MiB));
  ASSERT_TRUE(remove(kWindow1));
  EXPECT_TRUE(cached().ok());
  EXPECT_EQ(cache.walks.size(), 1u) << "the removed window's walk is dropped";
}

// The cache skips what cannot hold a TCE: a window never handed out for writing (generation 0), and, after new
// registrations, a walk that found none. Neither may hide a TCE written behind the counters (live count 0) into a
// window no mapping ever touched: it is found, cached or not.
TEST_F(V2, CachedInvariantCheckFindsATceWrittenIntoAnUntouchedWindow) {
  ClientMemory m(2 * MiB);
  InvariantCache cache;
  auto cached = [&] { return check_invariants(as, {&iommu()}, 0, &cache); };
  ASSERT_EQ(create(16, 1 * GiB, 1), kWindow1);  // the default window comes first: two windows, never written
  ASSERT_TRUE(cached().ok()) << cached().to_string();
  EXPECT_EQ(cache.walks.size(), 2u);
  ASSERT_TRUE(reg(m.ua(), 2 * MiB));  // the regions change
  ASSERT_TRUE(cached().ok()) << cached().to_string();
  auto& table = const_cast<iommu::TceTable&>(window(0));
  iommu::TceTable::Leaf leaf = table.hw_leaf(7, 1, true);
  leaf.entries->store(iommu::to_be(0x10000 | iommu::kTceRead), std::memory_order_relaxed);
  const InvariantReport full = check_invariants(as, {&iommu()});
  EXPECT_FALSE(full.ok());
  EXPECT_EQ(cached().violations, full.violations);
  leaf.entries->store(0, std::memory_order_relaxed);
  (void)table.hw_leaf(7, 1, false);  // the writer's next call
  EXPECT_TRUE(cached().ok()) << cached().to_string();
  EXPECT_TRUE(unreg(m.ua(), 2 * MiB));
}

// Clearing stops once the table's live entries are all cleared: entries at both ends of a sparse 2 GiB default
// window still go, with their mapped counts.
TEST_F(V2, FreeingASparseWindowClearsItsFirstAndLastEntries) {
  ClientMemory m(2 * MiB);
  ASSERT_TRUE(reg(m.ua(), 2 * MiB));
  const mm::RegionRef region = iommu().registrations()[0];
  ASSERT_TRUE(map(0, m.ua(), 4 * KiB));
  ASSERT_TRUE(map(2 * GiB - 4 * KiB, m.ua() + 64 * KiB, 4 * KiB));
  ASSERT_TRUE(map(1 * GiB, m.ua() + 128 * KiB, 4 * KiB));
  EXPECT_EQ(region->mapped(), 4u);
  check();
  ASSERT_TRUE(unmap(1 * GiB, 1 * GiB));  // the middle and the last one
  EXPECT_EQ(region->mapped(), 2u);
  check();
  ASSERT_TRUE(map(2 * GiB - 4 * KiB, m.ua() + 64 * KiB, 4 * KiB));
  ASSERT_TRUE(remove(0));
  EXPECT_EQ(region->mapped(), 1u);
  EXPECT_TRUE(unreg(m.ua(), 2 * MiB));
}


// MAP and UNMAP count a region's mappings once per run of pages, not per page: the counts must come out exactly as
// the per-page kernel's would, across two regions, over live entries (remap), and for a partial unmap. 64 KiB and
// 4 KiB pages, so runs end at region boundaries, at leaf boundaries and in between.
TEST_F(V2, MappedCountsStayExactWhenCountedPerRun) {
  ClientMemory m(2 * MiB);
  ASSERT_TRUE(reg(m.ua(), 1 * MiB));            // a: 16 host pages
  ASSERT_TRUE(reg(m.ua() + 1 * MiB, 1 * MiB));  // b
  qemu_windows();
  const auto regions = iommu().registrations();
  const mm::RegionRef& a = regions[0];
  const mm::RegionRef& b = regions[1];
  ASSERT_TRUE(map(kWindow1, m.ua(), 2 * MiB));  // 32 TCEs, 16 into each
  EXPECT_EQ(a->mapped(), 17u);
  EXPECT_EQ(b->mapped(), 17u);
  check();
  ASSERT_TRUE(map(kWindow1 + 12 * 64 * KiB, m.ua() + 1 * MiB, 8 * 64 * KiB));  // 4 of a's TCEs and 4 of b's -> b
  EXPECT_EQ(a->mapped(), 13u);
  EXPECT_EQ(b->mapped(), 21u);
  check();
  ASSERT_TRUE(unmap(kWindow1 + 8 * 64 * KiB, 16 * 64 * KiB));
  EXPECT_EQ(a->mapped(), 9u);
  EXPECT_EQ(b->mapped(), 9u);
  check();
  ASSERT_TRUE(map(0, m.ua() + 960 * KiB, 128 * KiB));  // the 4K window: 32 TCEs across the a/b boundary
  EXPECT_EQ(a->mapped(), 25u);
  EXPECT_EQ(b->mapped(), 25u);
  check();
  ASSERT_TRUE(unmap(0, 1 * GiB));
  ASSERT_TRUE(unmap(kWindow1, 2 * MiB));
  EXPECT_EQ(a->mapped(), 1u);
  EXPECT_EQ(b->mapped(), 1u);
  EXPECT_TRUE(unreg(m.ua(), 1 * MiB));
  EXPECT_TRUE(unreg(m.ua() + 1 * MiB, 1 * MiB));
}

TEST_F(V2, MapRefusesUnknownFlagsNoPermissionAndShortArgsz) {
  ClientMemory m(1 * MiB);
  ASSERT_TRUE(reg(m.ua(), 1 * MiB));
  EXPECT_EQ(map(0, m.ua(), 64 * KiB, 4 | VFIO_DMA_MAP_FLAG_READ).error(), kEINVAL);
  EXPECT_EQ(map(0, m.ua(), 64 * KiB, 0).error(), kEINVAL);
  vfio_iommu_type1_dma_map short_arg{31, 3, m.ua(), 0, 64 * KiB};
  EXPECT_EQ(iommu().map_dma(as, short_arg).error(), kEINVAL);
}

TEST_F(V2, MapOutsideAnyWindowIsENXIOAndMisalignedSizeIsEINVAL) {
  ClientMemory m(1 * MiB);
  ASSERT_TRUE(reg(m.ua(), 1 * MiB));
  qemu_windows();
  EXPECT_EQ(map(4 * GiB, m.ua(), 64 * KiB).error(), kENXIO);  // between the 1 GiB window and 2^59
  EXPECT_EQ(map(kWindow1, m.ua(), 68 * KiB).error(), kEINVAL);
  EXPECT_EQ(map(kWindow1, m.ua() + 4 * KiB, 64 * KiB).error(), kEINVAL);
}

TEST_F(V2, MisalignedIovaIsEINVAL) {  // the kernel returns +1
  ClientMemory m(1 * MiB);
  ASSERT_TRUE(reg(m.ua(), 1 * MiB));
  qemu_windows();
  EXPECT_EQ(map(kWindow1 + 4 * KiB, m.ua(), 64 * KiB).error(), kEINVAL);
  EXPECT_EQ(unmap(kWindow1 + 4 * KiB, 64 * KiB).error(), kEINVAL);
}

TEST_F(V2, MapOutsideRegisteredMemoryIsEINVALAndStraddlingRollsBack) {
  ClientMemory m(2 * MiB);
  ASSERT_TRUE(reg(m.ua(), 1 * MiB));
  qemu_windows();
  EXPECT_EQ(map(kWindow1, m.ua() + 1 * MiB, 64 * KiB).error(), kEINVAL);
  EXPECT_EQ(map(kWindow1, m.ua() + 512 * KiB, 1 * MiB).error(), kEINVAL);
  EXPECT_EQ(window(1).get(0), 0u);  // nothing of the straddling map is left
  EXPECT_EQ(iommu().registrations().front()->mapped(), 1u);
}

TEST_F(V2, WriteOnlyIsStoredReadWrite) {
  ClientMemory m(1 * MiB);
  ASSERT_TRUE(reg(m.ua(), 1 * MiB));
  qemu_windows();
  ASSERT_TRUE(map(kWindow1, m.ua(), 64 * KiB, VFIO_DMA_MAP_FLAG_WRITE));
  EXPECT_EQ(window(1).get(0) & iommu::kTcePermMask, iommu::kTceRead | iommu::kTceWrite);
  ASSERT_TRUE(map(kWindow1, m.ua() + 64 * KiB, 64 * KiB, VFIO_DMA_MAP_FLAG_READ));
  // The overwritten write mapping dirtied its page.
  EXPECT_TRUE(iommu().registrations().front()->is_dirty(m.ua()));
}

TEST_F(V2, MapOverAMappingMovesTheCounts) {
  ClientMemory a(1 * MiB), b(1 * MiB);
  ASSERT_TRUE(reg(a.ua(), 1 * MiB));
  ASSERT_TRUE(reg(b.ua(), 1 * MiB));
  qemu_windows();
  ASSERT_TRUE(map(kWindow1, a.ua(), 64 * KiB));
  auto regions = iommu().registrations();
  EXPECT_EQ(regions[0]->mapped(), 2u);
  ASSERT_TRUE(map(kWindow1, b.ua(), 64 * KiB));
  EXPECT_EQ(regions[0]->mapped(), 1u);
  EXPECT_EQ(regions[1]->mapped(), 2u);
  EXPECT_EQ(window(1).cached_ua(0), b.ua());
}

TEST_F(V2, MapGpuRamIsDirectWithNoPin) {
  ClientMemory gpu(16 * MiB, PROT_NONE);
  mm::RegionRef dev = gpu_ram(gpu);
  ASSERT_TRUE(reg(gpu.ua(), gpu.size()));
  qemu_windows();
  const uint64_t before = locked();
  ASSERT_TRUE(map(kWindow1 + 1 * GiB, gpu.ua(), 16 * MiB));
  EXPECT_EQ(window(1).get((1 * GiB >> 16) + 5) & ~iommu::kTcePermMask, kGpuHpa + 5 * 64 * KiB);
  EXPECT_EQ(locked(), before);
  EXPECT_EQ(as.pinner().pinned_pages(), 0u);
  EXPECT_EQ(dev->mapped(), 1u + 256u);
  check();
  ASSERT_TRUE(remove(kWindow1));
  ASSERT_TRUE(unreg(gpu.ua(), gpu.size()));
  EXPECT_TRUE(as.registry().put(dev));
}

TEST_F(V2, MapPastTheWindowEndIsEINVAL) {  // the kernel writes past the window
  ClientMemory m(1 * MiB);
  ASSERT_TRUE(reg(m.ua(), 1 * MiB));
  ASSERT_TRUE(remove(0));
  ASSERT_EQ(create(16, 512 * MiB, 1), 0u);
  EXPECT_EQ(map(512 * MiB - 64 * KiB, m.ua(), 128 * KiB).error(), kEINVAL);
  EXPECT_EQ(unmap(512 * MiB - 64 * KiB, 128 * KiB).error(), kEINVAL);
}

TEST_F(V2, UnmapRefusesFlagsAndMisalignedSizesAndAllocatesNothing) {
  ClientMemory m(1 * MiB);
  ASSERT_TRUE(reg(m.ua(), 1 * MiB));
  qemu_windows();
  vfio_iommu_type1_dma_unmap u{sizeof(u), 1, kWindow1, 64 * KiB};
  EXPECT_EQ(iommu().unmap_dma(as, u).error(), kEINVAL);
  EXPECT_EQ(unmap(kWindow1, 68 * KiB).error(), kEINVAL);
  EXPECT_TRUE(unmap(kWindow1, 64 * KiB));  // nothing mapped: 0
  const uint64_t before = window(1).allocated_bytes();
  EXPECT_TRUE(unmap(kWindow1 + 4 * GiB, 8 * GiB));  // over leaves never allocated
  EXPECT_EQ(window(1).allocated_bytes(), before);
}

TEST(SpaprTce, V1EnableChargesTheWindowAndMapPinsEachPage) {
  mm::AddressSpace as(process_options(1));
  auto v1 = SpaprTceIommu::open(VFIO_SPAPR_TCE_IOMMU);
  EXPECT_EQ((*v1)->enable(as).error(), kENODEV);  // no group
  LegacyGroup g(3);
  ASSERT_TRUE((*v1)->attach_group(g.group));
  ASSERT_TRUE((*v1)->enable(as));
  EXPECT_EQ((*v1)->enable(as).error(), kEBUSY);
  EXPECT_EQ(as.locked_memory().locked_pages(), 32768u);
  ClientMemory m(1 * MiB);
  vfio_iommu_type1_dma_map map{sizeof(map), 3, m.ua(), 0, 64 * KiB};
  ASSERT_TRUE((*v1)->map_dma(as, map));
  EXPECT_EQ(as.pinner().pinned_pages(), 1u);
  const uint64_t tce = g.table_group.legacy_table()->get(0);
  EXPECT_EQ(tce & ~iommu::kTcePermMask, *as.pinner().ua_to_hpa(m.ua()));
  ClientMemory gpu(1 * MiB, PROT_NONE);
  ASSERT_TRUE(as.pinner().add_special_mapping(gpu.ua(), gpu.size()));
  map.vaddr = gpu.ua();
  map.iova = 1 * MiB;
  EXPECT_EQ((*v1)->map_dma(as, map).error(), kEFAULT);  // GPU RAM cannot be pinned
  vfio_iommu_spapr_register_memory reg{sizeof(reg), 0, m.ua(), 1 * MiB};
  EXPECT_EQ((*v1)->register_memory(as, reg).error(), kENOTTY);
  vfio_iommu_type1_dma_unmap unmap{sizeof(unmap), 0, 0, 64 * KiB};
  ASSERT_TRUE((*v1)->unmap_dma(as, unmap));
  EXPECT_EQ(as.pinner().pinned_pages(), 0u);
  ASSERT_TRUE((*v1)->disable(as));
  EXPECT_EQ(as.locked_memory().locked_pages(), 0u);
  (*v1)->detach_group(g.group);
}

// tce_iommu_build pins the page (tce_iommu_use_page) before tce_page_is_contained refuses it with EPERM, and never
// releases that pin. Here the refused page is unpinned: nothing stays pinned after the failed MAP_DMA.
TEST(SpaprTce, V1MapRefusedForSmallBackingReleasesThePin) {
  mm::AddressSpace as(process_options(1));
  LegacyGroup g(3, /*page_shift=*/21);  // 2 MiB IOMMU pages over 64 KiB host pages
  auto v1 = SpaprTceIommu::open(VFIO_SPAPR_TCE_IOMMU);
  ASSERT_TRUE((*v1)->attach_group(g.group));
  ASSERT_TRUE((*v1)->enable(as));
  ClientMemory m(4 * MiB, PROT_READ | PROT_WRITE, 2 * MiB);
  vfio_iommu_type1_dma_map map{sizeof(map), 3, m.ua(), 0, 2 * MiB};
  EXPECT_EQ((*v1)->map_dma(as, map).error(), kEPERM);
  EXPECT_EQ(as.pinner().pinned_pages(), 0u);
  EXPECT_EQ(g.table_group.legacy_table()->get(0), 0u);
  InvariantReport rep = check_invariants(as, {v1->get()});
  EXPECT_TRUE(rep.ok()) << rep.to_string();
  ASSERT_TRUE((*v1)->disable(as));
  EXPECT_EQ(as.locked_memory().locked_pages(), 0u);
  (*v1)->detach_group(g.group);
}

TEST(SpaprTce, LargePagesNeedLargeBacking) {
  auto shifts = std::make_shared<mm::FixedPageShiftSource>();
  mm::AddressSpaceOptions o = process_options(1);
  o.pinner.page_shifts = shifts;
  mm::AddressSpace as(o);
  PhbGroup g(7);
  Container c;
  ASSERT_TRUE(c.attach_group(g.group));
  ASSERT_TRUE(c.set_iommu(VFIO_SPAPR_TCE_v2_IOMMU));
  SpaprTceIommu& iommu = *c.iommu();
  ClientMemory normal(4 * MiB, PROT_READ | PROT_WRITE, 2 * MiB), huge(4 * MiB, PROT_READ | PROT_WRITE, 2 * MiB);
  shifts->set(huge.ua(), huge.size(), 21);
  vfio_iommu_spapr_register_memory r{sizeof(r), 0, normal.ua(), normal.size()};
  ASSERT_TRUE(iommu.register_memory(as, r));
  r.vaddr = huge.ua();
  ASSERT_TRUE(iommu.register_memory(as, r));
  vfio_iommu_spapr_tce_remove rm{sizeof(rm), 0, 0};
  ASSERT_TRUE(iommu.remove_window(as, rm));
  vfio_iommu_spapr_tce_create cr{sizeof(cr), 0, 21, 0, 1ull << 40, 2, 0};
  ASSERT_TRUE(iommu.create_window(as, cr));
  vfio_iommu_type1_dma_map m{sizeof(m), 3, normal.ua(), cr.start_addr, 2 * MiB};
  EXPECT_EQ(iommu.map_dma(as, m).error(), kEINVAL);
  m.vaddr = huge.ua();
  EXPECT_TRUE(iommu.map_dma(as, m));
  InvariantReport rep = check_invariants(as, {&iommu});
  EXPECT_TRUE(rep.ok()) << rep.to_string();
  c.detach_group(g.group);
}

}  // namespace
}  // namespace nv2pt::vfio
