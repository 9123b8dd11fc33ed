// The sPAPR TCE container (docs/kernel/container.md): pre-registration, windows and tables, map/unmap, groups and
// lifecycle, races. Each test is named after the behaviour it holds; the invariant checker runs after each step.
#include "vfio/spapr_tce_iommu.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>

#include "vfio/test_host.h"

namespace nv2pt::vfio {
namespace {

using namespace testing;

constexpr uint64_t kWindow1 = 1ull << 59;
constexpr uint64_t kGpuHpa = 0x400000000000ull;  // first GPU RAM window of the default topology

class V2 : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(container.attach_group(g4.group));
    ASSERT_TRUE(container.set_iommu(VFIO_SPAPR_TCE_v2_IOMMU));
  }
  void TearDown() override { check(); }

  void check(uint64_t extra = 0) {
    std::vector<const SpaprTceIommu*> all;
    if (container.iommu()) all.push_back(container.iommu());
    for (Container* c : others) if (c->iommu()) all.push_back(c->iommu());
    InvariantReport r = check_invariants(as, all, extra);
    EXPECT_TRUE(r.ok()) << r.to_string();
  }
  SpaprTceIommu& iommu() { return *container.iommu(); }
  uint64_t locked() const { return as.locked_memory().locked_pages(); }

  Result<void> reg(uint64_t ua, uint64_t size, mm::AddressSpace* caller = nullptr) {
    vfio_iommu_spapr_register_memory r{sizeof(r), 0, ua, size};
    return iommu().register_memory(caller ? *caller : as, r);
  }
  Result<void> unreg(uint64_t ua, uint64_t size) {
    vfio_iommu_spapr_register_memory r{sizeof(r), 0, ua, size};
    return iommu().unregister_memory(as, r);
  }
  Result<void> map(uint64_t iova, uint64_t ua, uint64_t size,
                   uint32_t flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE) {
    vfio_iommu_type1_dma_map m{sizeof(m), flags, ua, iova, size};
    return iommu().map_dma(as, m);
  }
  Result<void> unmap(uint64_t iova, uint64_t size) {
    vfio_iommu_type1_dma_unmap u{sizeof(u), 0, iova, size};
    return iommu().unmap_dma(as, u);
  }
  Result<uint64_t> create(unsigned shift, uint64_t size, unsigned levels) {
    vfio_iommu_spapr_tce_create c{sizeof(c), 0, shift, 0, size, levels, 0};
    NV2PT_TRY(iommu().create_window(as, c));
    return c.start_addr;
  }
  Result<void> remove(uint64_t start) {
    vfio_iommu_spapr_tce_remove r{sizeof(r), 0, start};
    return iommu().remove_window(as, r);
  }
  // What QEMU 7.2 sets up: the default window dropped, a 1 GiB 4K window at 0 (machine reset), then the 64-bit
  // window (the guest's DDW) at 2^59.
  void qemu_windows() {
    ASSERT_TRUE(remove(0));
    ASSERT_EQ(create(12, 1 * GiB, 2), 0u);
    ASSERT_EQ(create(16, 1ull << 46, 2), kWindow1);
  }
  // A GPU RAM mmap as the device layer makes it: a special (PFN) mapping registered as device memory.
  mm::RegionRef gpu_ram(const ClientMemory& m) {
    EXPECT_TRUE(as.pinner().add_special_mapping(m.ua(), m.size()));
    auto r = as.registry().add_device(m.ua(), m.size() >> 16, kGpuHpa);
    EXPECT_TRUE(r);
    return r ? *r : nullptr;
  }
  const iommu::TceTable& window(unsigned slot) {
    for (auto& w : iommu().windows()) if (w.slot == slot) return *w.table;
    ADD_FAILURE() << "no window " << slot;
    return *iommu().windows().front().table;
  }

  mm::AddressSpace as{process_options(1)};
  NvlinkGroup g4{4};
  std::vector<Container*> others;
  Container container;
};

// ---------- Pre-registration ----------

TEST_F(V2, Scenario25_Register1GiBChargesAndEnablesMap) {
  ClientMemory m(1 * GiB);
  vfio_iommu_type1_dma_map early{sizeof(early), 3, m.ua(), 0, 64 * KiB};
  EXPECT_EQ(iommu().map_dma(as, early).error(), kEPERM);  // before any REGISTER
  const uint64_t before = locked();
  ASSERT_TRUE(reg(m.ua(), 1 * GiB));
  EXPECT_EQ(locked() - before, 16384u);
  EXPECT_TRUE(iommu().enabled());
  check();
  qemu_windows();
  EXPECT_TRUE(map(kWindow1, m.ua(), 64 * KiB));
}

TEST_F(V2, Scenario26_RegisterRejectsMisalignmentAndWrap) {
  ClientMemory m(1 * MiB);
  EXPECT_EQ(reg(m.ua() + 4 * KiB, 64 * KiB).error(), kEINVAL);
  EXPECT_EQ(reg(m.ua(), 68 * KiB).error(), kEINVAL);
  EXPECT_EQ(reg(~0ull - 0xFFFF, 128 * KiB).error(), kEINVAL);
  vfio_iommu_spapr_register_memory short_arg{23, 0, m.ua(), 64 * KiB};
  EXPECT_EQ(iommu().register_memory(as, short_arg).error(), kEINVAL);
  vfio_iommu_spapr_register_memory flags{sizeof(flags), 1, m.ua(), 64 * KiB};
  EXPECT_EQ(iommu().register_memory(as, flags).error(), kEINVAL);
  EXPECT_EQ(locked(), 0u);
}

TEST_F(V2, Scenario27_RegisterTwiceOnOneContainerIsEBUSY) {
  ClientMemory m(1 * MiB);
  ASSERT_TRUE(reg(m.ua(), 1 * MiB));
  EXPECT_EQ(reg(m.ua(), 1 * MiB).error(), kEBUSY);
  EXPECT_EQ(locked(), 16u);
  EXPECT_EQ(iommu().registrations().front()->used(), 1u);
}

TEST_F(V2, Scenario28_SecondContainerSharesTheRegion) {
  ClientMemory m(1 * MiB);
  NvlinkGroup g5(5);
  Container second;
  others.push_back(&second);
  ASSERT_TRUE(second.attach_group(g5.group));
  ASSERT_TRUE(second.set_iommu(VFIO_SPAPR_TCE_v2_IOMMU));
  ASSERT_TRUE(reg(m.ua(), 1 * MiB));
  vfio_iommu_spapr_register_memory r{sizeof(r), 0, m.ua(), 1 * MiB};
  ASSERT_TRUE(second.iommu()->register_memory(as, r));
  EXPECT_EQ(iommu().registrations().front()->used(), 2u);
  EXPECT_EQ(locked(), 16u);  // pinned and charged once
  ASSERT_TRUE(unreg(m.ua(), 1 * MiB));
  EXPECT_EQ(as.registry().size(), 1u);
  EXPECT_EQ(second.iommu()->registrations().front()->used(), 1u);
  check();
  second.detach_group(g5.group);
  others.clear();
}

TEST_F(V2, Scenario29_OverlappingRegisterIsEINVALAndLeavesNoCharge) {
  ClientMemory m(2 * MiB);
  ASSERT_TRUE(reg(m.ua(), 1 * MiB));
  EXPECT_EQ(reg(m.ua() + 512 * KiB, 1 * MiB).error(), kEINVAL);
  EXPECT_EQ(reg(m.ua(), 2 * MiB).error(), kEINVAL);
  EXPECT_EQ(locked(), 16u);
  EXPECT_EQ(as.pinner().pinned_pages(), 16u);
}

TEST_F(V2, Scenario30_RegisterInsideGpuRamAndOverAHoleIsEFAULT) {
  ClientMemory gpu(16 * MiB, PROT_NONE);
  gpu_ram(gpu);
  EXPECT_EQ(reg(gpu.ua() + 1 * MiB, 1 * MiB).error(), kEFAULT);  // GUP refuses the PFN mapping
  ClientMemory m(2 * MiB);
  m.unmap(1 * MiB, 64 * KiB);
  EXPECT_EQ(reg(m.ua(), 2 * MiB).error(), kEFAULT);  // never a positive count
  EXPECT_EQ(locked(), 0u);
  EXPECT_EQ(as.pinner().pinned_pages(), 0u);
}

TEST_F(V2, Scenario31_RegisterExactlyTheGpuRamMmapSharesTheDeviceRegion) {
  ClientMemory gpu(16 * MiB, PROT_NONE);
  mm::RegionRef dev = gpu_ram(gpu);
  ASSERT_TRUE(reg(gpu.ua(), gpu.size()));
  EXPECT_EQ(locked(), 0u);
  EXPECT_EQ(dev->used(), 2u);
  ASSERT_TRUE(unreg(gpu.ua(), gpu.size()));
  EXPECT_EQ(dev->used(), 1u);
  EXPECT_TRUE(as.registry().put(dev));
}

TEST_F(V2, Scenario32_RlimitMemlockWithoutAndWithCapIpcLock) {
  ClientMemory m(4 * MiB);
  as.locked_memory().set_policy(mm::MemlockPolicy::fixed(2 * MiB, false));
  EXPECT_EQ(reg(m.ua(), 4 * MiB).error(), kENOMEM);
  EXPECT_EQ(locked(), 0u);
  as.locked_memory().set_policy(mm::MemlockPolicy::fixed(2 * MiB, true));
  EXPECT_TRUE(reg(m.ua(), 4 * MiB));
  EXPECT_EQ(locked(), 64u);
}

TEST_F(V2, Scenario33_RegisterUnmappedIsEFAULTAndRolledBack) {
  ClientMemory m(1 * MiB, PROT_NONE);
  m.unmap(0, 1 * MiB);
  EXPECT_EQ(reg(m.ua(), 1 * MiB).error(), kEFAULT);
  EXPECT_EQ(locked(), 0u);
}

TEST_F(V2, Scenario34_RegisterSizeZeroIsEINVAL) {  // the kernel's ENOMEM is an accident
  ClientMemory m(1 * MiB);
  EXPECT_EQ(reg(m.ua(), 0).error(), kEINVAL);
}

TEST_F(V2, Scenario35_UnregisterUnknownForeignAndFresh) {
  ClientMemory m(1 * MiB);
  {
    Container fresh;
    NvlinkGroup g6(6);
    ASSERT_TRUE(fresh.attach_group(g6.group));
    ASSERT_TRUE(fresh.set_iommu(VFIO_SPAPR_TCE_v2_IOMMU));
    vfio_iommu_spapr_register_memory r{sizeof(r), 0, m.ua(), 1 * MiB};
    EXPECT_EQ(fresh.iommu()->unregister_memory(as, r).error(), kEPERM);  // no mm bound yet
    ASSERT_TRUE(reg(m.ua(), 1 * MiB));
    ASSERT_TRUE(fresh.iommu()->create_window(as, *std::make_unique<vfio_iommu_spapr_tce_create>(
                                                     vfio_iommu_spapr_tce_create{40, 0, 16, 0, 1 * GiB, 1, 0})));
    EXPECT_EQ(fresh.iommu()->unregister_memory(as, r).error(), kENOENT);  // known only to the other container
    fresh.detach_group(g6.group);
  }
  EXPECT_EQ(unreg(m.ua() + 64 * KiB, 64 * KiB).error(), kENOENT);
  EXPECT_EQ(iommu().registrations().front()->used(), 1u);
}

TEST_F(V2, Scenario36_UnregisterWhileMappedIsEBUSY) {  // the kernel returns 0 and leaks the region
  ClientMemory m(1 * MiB);
  ASSERT_TRUE(reg(m.ua(), 1 * MiB));
  qemu_windows();
  ASSERT_TRUE(map(kWindow1, m.ua(), 128 * KiB));
  EXPECT_EQ(unreg(m.ua(), 1 * MiB).error(), kEBUSY);
  EXPECT_EQ(iommu().registrations().size(), 1u);
  EXPECT_EQ(iommu().registrations().front()->used(), 1u);
  check();
  ASSERT_TRUE(unmap(kWindow1, 128 * KiB));
  EXPECT_TRUE(unreg(m.ua(), 1 * MiB));
  EXPECT_EQ(locked(), window(1).has_userspace_cache() ? iommu().charged_pages() : 0u);
}

// MAP and UNMAP count a region's mappings once per run of pages, not per page: the counts must come out exactly as
// the per-page kernel's would, across two regions, over live entries (remap), and for a partial unmap. 64 KiB and
// 4 KiB pages, so runs end at region boundaries, at leaf boundaries and in between.
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
  iommu::TceTable::Leaf leaf = table.hw_leaf(100, true);
  leaf.entries->store(iommu::to_be(0x10000 | iommu::kTceRead), std::memory_order_relaxed);
  const InvariantReport full = check_invariants(as, {&iommu()});
  const InvariantReport from_cache = cached();
  EXPECT_FALSE(from_cache.ok());
  EXPECT_EQ(from_cache.violations, full.violations);
  leaf.entries->store(0, std::memory_order_relaxed);
  (void)table.hw_leaf(100, false);  // the writer's next call
  EXPECT_TRUE(cached().ok()) << cached().to_string();
  ASSERT_TRUE(unmap(kWindow1, 1 * MiB));
  ASSERT_TRUE(remove(kWindow1));
  EXPECT_TRUE(cached().ok());
  EXPECT_EQ(cache.walks.size(), 1u) << "the removed window's walk is dropped";
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

TEST_F(V2, Scenario37_AnotherProcessGetsEPERM) {
  ClientMemory m(1 * MiB);
  ASSERT_TRUE(reg(m.ua(), 512 * KiB));
  mm::AddressSpace other(process_options(2));
  EXPECT_EQ(reg(m.ua() + 512 * KiB, 512 * KiB, &other).error(), kEPERM);
  vfio_iommu_spapr_tce_info info{sizeof(info)};
  EXPECT_EQ(iommu().get_info(other, info).error(), kEPERM);
  // CHECK_EXTENSION has no mm check.
  EXPECT_EQ(iommu().ioctl(other, VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_v2_IOMMU), 1);
}

// ---------- Windows and tables ----------

TEST(SpaprTce, Scenario39_GetInfoNoGroupThenCompoundGroup) {
  mm::AddressSpace as(process_options(1));
  auto v2 = SpaprTceIommu::open(VFIO_SPAPR_TCE_v2_IOMMU);
  ASSERT_TRUE(v2);
  vfio_iommu_spapr_tce_info info{sizeof(info)};
  EXPECT_EQ((*v2)->get_info(as, info).error(), kENXIO);
  NvlinkGroup g(4);
  ASSERT_TRUE((*v2)->attach_group(g.group));
  ASSERT_TRUE((*v2)->get_info(as, info));
  EXPECT_EQ(info.flags & VFIO_IOMMU_SPAPR_INFO_DDW, VFIO_IOMMU_SPAPR_INFO_DDW);
  EXPECT_EQ(info.ddw.pgsizes, (1ull << 12) | (1ull << 16));
  EXPECT_EQ(info.ddw.max_dynamic_windows_supported, 2u);
  EXPECT_EQ(info.ddw.levels, 5u);
  EXPECT_EQ(info.dma32_window_start, 0u);
  EXPECT_EQ(info.dma32_window_size, 2u * GiB);
  (*v2)->detach_group(g.group);
}

TEST_F(V2, Scenario40_GetInfoArgszRules) {
  vfio_iommu_spapr_tce_info info;
  std::memset(&info, 0xAB, sizeof(info));
  info.argsz = 16;
  ASSERT_EQ(iommu().ioctl(as, VFIO_IOMMU_SPAPR_TCE_GET_INFO, reinterpret_cast<unsigned long>(&info)), 0);
  EXPECT_EQ(info.dma32_window_size, 2u * GiB);
  EXPECT_EQ(info.ddw.pgsizes, 0xABABABABABABABABull);  // only 16 bytes written
  info.argsz = 15;
  EXPECT_EQ(iommu().ioctl(as, VFIO_IOMMU_SPAPR_TCE_GET_INFO, reinterpret_cast<unsigned long>(&info)).error(),
            kEINVAL);
}

TEST(SpaprTce, Scenario40_V1HasNoDdwFlag) {
  mm::AddressSpace as(process_options(1));
  LegacyGroup g(3);
  auto v1 = SpaprTceIommu::open(VFIO_SPAPR_TCE_IOMMU);
  ASSERT_TRUE((*v1)->attach_group(g.group));
  vfio_iommu_spapr_tce_info info{sizeof(info)};
  ASSERT_TRUE((*v1)->get_info(as, info));
  EXPECT_EQ(info.flags, 0u);
  (*v1)->detach_group(g.group);
}

TEST_F(V2, Scenario41_FirstMapCreatesTheDefaultWindow) {
  ClientMemory m(1 * MiB);
  ASSERT_TRUE(reg(m.ua(), 1 * MiB));
  EXPECT_TRUE(iommu().default_window_pending());
  ASSERT_TRUE(map(0, m.ua(), 64 * KiB));
  EXPECT_FALSE(iommu().default_window_pending());
  EXPECT_EQ(window(0).page_shift(), 12u);
  EXPECT_EQ(window(0).geometry().levels, 1u);
  EXPECT_EQ(iommu().charged_pages(), 128u);
  EXPECT_EQ(locked(), 16u + 128u);
}

TEST_F(V2, Scenario42_RemoveWhilePendingThenMapIsENXIO) {
  ClientMemory m(1 * MiB);
  ASSERT_TRUE(reg(m.ua(), 1 * MiB));
  ASSERT_TRUE(remove(0));
  EXPECT_TRUE(iommu().windows().empty());
  EXPECT_EQ(map(0, m.ua(), 64 * KiB).error(), kENXIO);
}

TEST_F(V2, Scenario43_CreateLandsInSlot1WithDefaultWindow) {
  const uint64_t start = locked();
  ASSERT_EQ(create(16, 1ull << 46, 2), kWindow1);  // the pending default window is created first, in slot 0
  EXPECT_EQ(iommu().windows().size(), 2u);
  EXPECT_EQ(locked() - start, 128u + 262152u);
  EXPECT_EQ(window(1).allocated_bytes(), 512 * KiB);
  ASSERT_TRUE(remove(0));
  ASSERT_TRUE(remove(kWindow1));
  EXPECT_EQ(create(16, 1ull << 46, 2), 0u);  // slot 0 free: start 0
}

TEST_F(V2, Scenario44_CreateRejectsBadLevelsSizesAndPageShifts) {
  ASSERT_TRUE(remove(0));
  EXPECT_EQ(create(16, 1ull << 40, 0).error(), kEINVAL);
  EXPECT_EQ(create(16, 1ull << 40, 6).error(), kEINVAL);
  EXPECT_EQ(create(16, 3ull << 40, 2).error(), kEINVAL);
  EXPECT_EQ(create(24, 1ull << 40, 2).error(), kEINVAL);  // 16M not in the compound group's 4K|64K
  EXPECT_EQ(locked(), 0u);
}

TEST_F(V2, Scenario45_FiftyFiveBitRuleRollsBackTheCharge) {  // the kernel leaks the 16386.125 MiB charge
  ASSERT_TRUE(remove(0));
  EXPECT_EQ(create(16, 1ull << 46, 3).error(), kEINVAL);
  EXPECT_EQ(locked(), 0u);
}

TEST_F(V2, Scenario46_OneLevel2To46IsENOMEMWithNoCharge) {
  ASSERT_TRUE(remove(0));
  EXPECT_EQ(create(16, 1ull << 46, 1).error(), kENOMEM);
  EXPECT_EQ(locked(), 0u);
}

TEST_F(V2, Scenario47_NoFreeSlotFlagsArgszAndV1) {
  ASSERT_TRUE(create(16, 1ull << 40, 2));  // default + this
  EXPECT_EQ(create(16, 1ull << 40, 2).error(), kENOSPC);
  vfio_iommu_spapr_tce_create c{sizeof(c), 1, 16, 0, 1ull << 40, 2, 0};
  EXPECT_EQ(iommu().create_window(as, c).error(), kEINVAL);
  c.flags = 0;
  c.argsz = 39;
  EXPECT_EQ(iommu().create_window(as, c).error(), kEINVAL);
  auto v1 = SpaprTceIommu::open(VFIO_SPAPR_TCE_IOMMU);
  c.argsz = 40;
  EXPECT_EQ((*v1)->create_window(as, c).error(), kENOTTY);
}

TEST_F(V2, Scenario48_RemoveClearsRestoresAndFrees) {
  ClientMemory m(1 * MiB);
  ASSERT_TRUE(reg(m.ua(), 1 * MiB));
  qemu_windows();
  ASSERT_TRUE(map(kWindow1, m.ua(), 1 * MiB));
  EXPECT_EQ(iommu().registrations().front()->mapped(), 17u);
  check();
  ASSERT_TRUE(remove(kWindow1));
  EXPECT_EQ(iommu().registrations().front()->mapped(), 1u);
  EXPECT_EQ(locked(), 16u + iommu().charged_pages());
  EXPECT_EQ(g4.gpu.window_count(), 1u);
  EXPECT_EQ(g4.gpu.window(1), nullptr);
  EXPECT_EQ(remove(kWindow1).error(), kEINVAL);
}

TEST_F(V2, Scenario49_RemoveByAnAddressInsideTheWindow) {  // kept from tce_iommu_find_table
  qemu_windows();
  EXPECT_TRUE(remove(kWindow1 + 64 * KiB));
  EXPECT_EQ(iommu().windows().size(), 1u);
}

TEST_F(V2, Scenario50_SmallWindowIsWidened) {  // kept, and the real size reported
  ClientMemory m(1 * MiB);
  ASSERT_TRUE(reg(m.ua(), 1 * MiB));
  ASSERT_TRUE(remove(0));
  ASSERT_EQ(create(16, 256 * MiB, 1), 0u);
  EXPECT_EQ(window(0).bus_end(), 512 * MiB);
  EXPECT_TRUE(map(300 * MiB, m.ua(), 64 * KiB));
}

// ---------- Map / unmap ----------

TEST_F(V2, Scenario52_MapFlagAndArgszChecks) {
  ClientMemory m(1 * MiB);
  ASSERT_TRUE(reg(m.ua(), 1 * MiB));
  EXPECT_EQ(map(0, m.ua(), 64 * KiB, 4 | VFIO_DMA_MAP_FLAG_READ).error(), kEINVAL);
  EXPECT_EQ(map(0, m.ua(), 64 * KiB, 0).error(), kEINVAL);
  vfio_iommu_type1_dma_map short_arg{31, 3, m.ua(), 0, 64 * KiB};
  EXPECT_EQ(iommu().map_dma(as, short_arg).error(), kEINVAL);
}

TEST_F(V2, Scenario53_NoWindowAndMisalignedSizes) {
  ClientMemory m(1 * MiB);
  ASSERT_TRUE(reg(m.ua(), 1 * MiB));
  qemu_windows();
  EXPECT_EQ(map(4 * GiB, m.ua(), 64 * KiB).error(), kENXIO);  // between the 1 GiB window and 2^59
  EXPECT_EQ(map(kWindow1, m.ua(), 68 * KiB).error(), kEINVAL);
  EXPECT_EQ(map(kWindow1, m.ua() + 4 * KiB, 64 * KiB).error(), kEINVAL);
}

TEST_F(V2, Scenario54_MisalignedIovaIsEINVAL) {  // the kernel returns +1
  ClientMemory m(1 * MiB);
  ASSERT_TRUE(reg(m.ua(), 1 * MiB));
  qemu_windows();
  EXPECT_EQ(map(kWindow1 + 4 * KiB, m.ua(), 64 * KiB).error(), kEINVAL);
  EXPECT_EQ(unmap(kWindow1 + 4 * KiB, 64 * KiB).error(), kEINVAL);
}

TEST_F(V2, Scenario55_OutsideRegisteredMemoryAndStraddlingRollsBack) {
  ClientMemory m(2 * MiB);
  ASSERT_TRUE(reg(m.ua(), 1 * MiB));
  qemu_windows();
  EXPECT_EQ(map(kWindow1, m.ua() + 1 * MiB, 64 * KiB).error(), kEINVAL);
  EXPECT_EQ(map(kWindow1, m.ua() + 512 * KiB, 1 * MiB).error(), kEINVAL);
  EXPECT_EQ(window(1).get(0), 0u);  // nothing of the straddling map is left
  EXPECT_EQ(iommu().registrations().front()->mapped(), 1u);
}

TEST_F(V2, Scenario56_WriteOnlyIsStoredReadWrite) {
  ClientMemory m(1 * MiB);
  ASSERT_TRUE(reg(m.ua(), 1 * MiB));
  qemu_windows();
  ASSERT_TRUE(map(kWindow1, m.ua(), 64 * KiB, VFIO_DMA_MAP_FLAG_WRITE));
  EXPECT_EQ(window(1).get(0) & iommu::kTcePermMask, iommu::kTceRead | iommu::kTceWrite);
  ASSERT_TRUE(map(kWindow1, m.ua() + 64 * KiB, 64 * KiB, VFIO_DMA_MAP_FLAG_READ));
  // The overwritten write mapping dirtied its page.
  EXPECT_TRUE(iommu().registrations().front()->is_dirty(m.ua()));
}

TEST_F(V2, Scenario57_MapOverAMappingMovesTheCounts) {
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

TEST_F(V2, Scenario58_MapGpuRamIsDirectWithNoPin) {
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

TEST_F(V2, Scenario61_MapPastTheWindowEndIsEINVAL) {  // the kernel writes past the window
  ClientMemory m(1 * MiB);
  ASSERT_TRUE(reg(m.ua(), 1 * MiB));
  ASSERT_TRUE(remove(0));
  ASSERT_EQ(create(16, 512 * MiB, 1), 0u);
  EXPECT_EQ(map(512 * MiB - 64 * KiB, m.ua(), 128 * KiB).error(), kEINVAL);
  EXPECT_EQ(unmap(512 * MiB - 64 * KiB, 128 * KiB).error(), kEINVAL);
}

TEST_F(V2, Scenario62_UnmapRules) {
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

TEST(SpaprTce, Scenario63_V1RefusesIoda2AndCompoundGroups) {
  NvlinkGroup nv(4);
  PhbGroup phb(7);
  Container c;
  ASSERT_TRUE(c.attach_group(nv.group));
  EXPECT_EQ(c.set_iommu(VFIO_SPAPR_TCE_IOMMU).error(), kEPERM);
  EXPECT_EQ(c.iommu(), nullptr);
  EXPECT_TRUE(c.set_iommu(VFIO_SPAPR_TCE_v2_IOMMU));
  c.detach_group(nv.group);
  Container d;
  ASSERT_TRUE(d.attach_group(phb.group));
  EXPECT_EQ(d.set_iommu(VFIO_SPAPR_TCE_IOMMU).error(), kEPERM);
  d.detach_group(phb.group);
}

TEST(SpaprTce, Scenario64_V1EnablePinsAndDisable) {
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

TEST(SpaprTce, Scenario60_LargePagesNeedLargeBacking) {
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

// ---------- Groups and lifecycle ----------

TEST(SpaprTce, Scenario65_AttachRules) {
  NvlinkGroup nv(4), nv5(5);
  PhbGroup phb(7);
  LegacyGroup legacy(3);
  auto v2 = SpaprTceIommu::open(VFIO_SPAPR_TCE_v2_IOMMU);
  EXPECT_EQ((*v2)->attach_group(legacy.group).error(), kEPERM);
  ASSERT_TRUE((*v2)->attach_group(nv.group));
  EXPECT_EQ((*v2)->attach_group(nv.group).error(), kEBUSY);
  EXPECT_EQ((*v2)->attach_group(phb.group).error(), kEPERM);  // different ops
  EXPECT_TRUE((*v2)->attach_group(nv5.group));
  Group no_data(9, nullptr);
  EXPECT_EQ((*v2)->attach_group(no_data).error(), kENODEV);
  auto v1 = SpaprTceIommu::open(VFIO_SPAPR_TCE_IOMMU);
  EXPECT_EQ((*v1)->attach_group(phb.group).error(), kEPERM);
  (*v2)->detach_group(nv.group);
  (*v2)->detach_group(nv5.group);
}

TEST_F(V2, Scenario66_SecondGroupGetsEveryWindow) {
  qemu_windows();
  NvlinkGroup g5(5);
  ASSERT_TRUE(container.attach_group(g5.group));
  EXPECT_EQ(g5.gpu.window(1), &window(1));
  EXPECT_EQ(g5.npu.window(1), &window(1));
  check();
  container.detach_group(g5.group);
}

TEST_F(V2, Scenario67_DetachKeepsTablesReattachReprograms) {
  qemu_windows();
  NvlinkGroup g5(5);
  ASSERT_TRUE(container.attach_group(g5.group));
  const uint64_t charged = locked();
  container.detach_group(g5.group);
  EXPECT_EQ(g5.gpu.window_count(), 0u);
  EXPECT_TRUE(g5.gpu.bypass());
  EXPECT_EQ(locked(), charged);
  ASSERT_TRUE(container.attach_group(g5.group));
  EXPECT_EQ(g5.gpu.window(1), &window(1));
  container.detach_group(g5.group);
}

TEST(SpaprTce, Scenario68_CloseWithLiveMappingsRestoresLockedMemory) {
  mm::AddressSpace as(process_options(1));
  ClientMemory m(4 * MiB);
  ClientMemory gpu(16 * MiB, PROT_NONE);
  NvlinkGroup g(4);
  {
    Container c;
    ASSERT_TRUE(c.attach_group(g.group));
    ASSERT_TRUE(c.set_iommu(VFIO_SPAPR_TCE_v2_IOMMU));
    SpaprTceIommu& iommu = *c.iommu();
    vfio_iommu_spapr_register_memory r{sizeof(r), 0, m.ua(), m.size()};
    ASSERT_TRUE(iommu.register_memory(as, r));
    vfio_iommu_type1_dma_map map{sizeof(map), 3, m.ua(), 0, 4 * MiB};
    ASSERT_TRUE(iommu.map_dma(as, map));  // default window
    vfio_iommu_spapr_tce_create cr{sizeof(cr), 0, 16, 0, 1ull << 46, 2, 0};
    ASSERT_TRUE(iommu.create_window(as, cr));
    map.iova = cr.start_addr + 0x244000000000ull;
    ASSERT_TRUE(iommu.map_dma(as, map));
    EXPECT_GT(as.locked_memory().locked_pages(), 262152u);
    c.detach_group(g.group);  // the last group out releases the driver, as closing the container does
    EXPECT_EQ(c.iommu(), nullptr);
  }
  EXPECT_EQ(as.locked_memory().locked_pages(), 0u);
  EXPECT_TRUE(as.registry().empty());
  EXPECT_EQ(as.pinner().pinned_pages(), 0u);
  EXPECT_TRUE(g.gpu.bypass());
  EXPECT_EQ(g.gpu.window_count(), 0u);
}

TEST_F(V2, Scenario69_NpuPeHoldsTheLastWindow) {
  ASSERT_TRUE(create(16, 1ull << 40, 2));  // default (slot 0) then slot 1
  EXPECT_EQ(g4.gpu.window_count(), 2u);
  EXPECT_EQ(g4.npu.window_count(), 1u);
  EXPECT_EQ(g4.npu.window(1), &window(1));
}

TEST_F(V2, SetWindowFailureOnAMemberUndoesTheCreate) {  // firmware errors become EIO
  ASSERT_TRUE(remove(0));
  g4.npu.fail_next_set_window();
  EXPECT_EQ(create(16, 1ull << 40, 2).error(), kEIO);
  EXPECT_EQ(g4.gpu.window_count(), 0u);
  EXPECT_TRUE(iommu().windows().empty());
  EXPECT_EQ(locked(), 0u);
}

TEST(Container, SetIommuRules) {
  Container c;
  EXPECT_EQ(c.set_iommu(VFIO_SPAPR_TCE_v2_IOMMU).error(), kEINVAL);  // no group
  NvlinkGroup g(4);
  ASSERT_TRUE(c.attach_group(g.group));
  EXPECT_EQ(c.set_iommu(VFIO_TYPE1v2_IOMMU).error(), kENODEV);
  EXPECT_EQ(c.check_extension(VFIO_TYPE1v2_IOMMU), 0);
  EXPECT_EQ(c.check_extension(VFIO_TYPE1_IOMMU), 0);
  EXPECT_EQ(c.check_extension(VFIO_SPAPR_TCE_v2_IOMMU), 1);
  EXPECT_EQ(c.check_extension(VFIO_EEH), 1);
  mm::AddressSpace as(process_options(1));
  EXPECT_EQ(c.ioctl(as, VFIO_IOMMU_MAP_DMA, 0).error(), kENOTTY);  // no driver yet
  ASSERT_TRUE(c.set_iommu(VFIO_SPAPR_TCE_v2_IOMMU));
  EXPECT_EQ(c.set_iommu(VFIO_SPAPR_TCE_v2_IOMMU).error(), kEINVAL);
  EXPECT_EQ(c.ioctl(as, VFIO_IOMMU_ENABLE, 0).error(), kENOTTY);  // v1 only
  EXPECT_EQ(c.ioctl(as, VFIO_GET_API_VERSION, 0), 0);
  EXPECT_EQ(c.ioctl(as, VFIO_IOMMU_MAP_DMA, 0).error(), kEFAULT);
  c.detach_group(g.group);
}

TEST_F(V2, EehOpsReachTheGroupsPe) {
  vfio_eeh_pe_op op{sizeof(op), 0, VFIO_EEH_PE_ENABLE};
  EXPECT_EQ(iommu().eeh_pe_op(as, op), 0);
  op.op = VFIO_EEH_PE_GET_STATE;
  EXPECT_EQ(iommu().eeh_pe_op(as, op), VFIO_EEH_PE_STATE_NORMAL);
  g4.group.eeh().freeze();
  EXPECT_EQ(iommu().eeh_pe_op(as, op), VFIO_EEH_PE_STATE_STOPPED);
  op.op = 42;
  EXPECT_EQ(iommu().eeh_pe_op(as, op).error(), kEINVAL);
  op.op = VFIO_EEH_PE_INJECT_ERR;
  op.argsz = 12;
  EXPECT_EQ(iommu().eeh_pe_op(as, op).error(), kEINVAL);
}

// ---------- Races ----------

TEST_F(V2, Scenario79_UnregisterRacingMapNeverLeavesATceIntoAFreedRegion) {
  ClientMemory m(1 * MiB);
  qemu_windows();
  for (int round = 0; round < 200; ++round) {
    ASSERT_TRUE(reg(m.ua(), 1 * MiB));
    std::atomic<bool> mapped{false};
    std::thread mapper([&] { mapped = map(kWindow1, m.ua(), 1 * MiB).has_value(); });
    auto unregistered = unreg(m.ua(), 1 * MiB);
    mapper.join();
    if (unregistered) {
      EXPECT_FALSE(mapped);  // unregister won: the map found no region
    } else {
      EXPECT_EQ(unregistered.error(), kEBUSY);  // map won: unregister refused
      ASSERT_TRUE(unmap(kWindow1, 1 * MiB));
      ASSERT_TRUE(unreg(m.ua(), 1 * MiB));
    }
    check();
  }
}

TEST_F(V2, Scenario80_ConcurrentMapsUnderOneMissingLevel) {
  ClientMemory m(4 * MiB);
  ASSERT_TRUE(reg(m.ua(), 4 * MiB));
  qemu_windows();
  const uint64_t before = window(1).allocated_blocks();
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] { EXPECT_TRUE(map(kWindow1 + i * MiB, m.ua() + i * MiB, 1 * MiB)); });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(window(1).allocated_blocks(), before + 2);  // one leaf for the table, one for the cache
}

TEST_F(V2, Scenario84_RemoveRacingMapIsSerialised) {
  ClientMemory m(1 * MiB);
  ASSERT_TRUE(reg(m.ua(), 1 * MiB));
  for (int round = 0; round < 100; ++round) {
    ASSERT_TRUE(remove(0) || true);
    auto start = create(16, 1ull << 40, 2);
    ASSERT_TRUE(start);
    std::thread mapper([&] {
      auto r = map(*start, m.ua(), 1 * MiB);
      if (!r) {
        EXPECT_EQ(r.error(), kENXIO);
      }
    });
    EXPECT_TRUE(remove(*start));
    mapper.join();
    EXPECT_EQ(iommu().registrations().front()->mapped(), 1u);
    check();
  }
}

TEST(SpaprTce, Scenario85_ProcessExitWithEverythingSetUp) {
  mm::AddressSpace as(process_options(1));
  ClientMemory m(2 * MiB);
  NvlinkGroup g4(4), g5(5);
  {
    Container a, b;
    ASSERT_TRUE(a.attach_group(g4.group));
    ASSERT_TRUE(a.set_iommu(VFIO_SPAPR_TCE_v2_IOMMU));
    ASSERT_TRUE(b.attach_group(g5.group));
    ASSERT_TRUE(b.set_iommu(VFIO_SPAPR_TCE_v2_IOMMU));
    vfio_iommu_spapr_register_memory r{sizeof(r), 0, m.ua(), m.size()};
    ASSERT_TRUE(a.iommu()->register_memory(as, r));
    ASSERT_TRUE(b.iommu()->register_memory(as, r));
    vfio_iommu_type1_dma_map map{sizeof(map), 3, m.ua(), 0, 2 * MiB};
    ASSERT_TRUE(a.iommu()->map_dma(as, map));
    ASSERT_TRUE(b.iommu()->map_dma(as, map));
    InvariantReport rep = check_invariants(as, {a.iommu(), b.iommu()});
    EXPECT_TRUE(rep.ok()) << rep.to_string();
  }  // both containers closed with groups still attached
  EXPECT_EQ(as.locked_memory().locked_pages(), 0u);
  EXPECT_TRUE(as.registry().empty());
  EXPECT_TRUE(g4.gpu.bypass());
}

}  // namespace
}  // namespace nv2pt::vfio

namespace nv2pt::vfio {
namespace {

TEST(SpaprTce, Q13_EehOpWithoutGroupsIsZero) {  // kept from the kernel
  mm::AddressSpace as(testing::process_options(1));
  auto v2 = SpaprTceIommu::open(VFIO_SPAPR_TCE_v2_IOMMU);
  vfio_eeh_pe_op op{sizeof(op), 0, 42};  // even an unknown op: no group is asked
  EXPECT_EQ((*v2)->eeh_pe_op(as, op), 0);
}

}  // namespace
}  // namespace nv2pt::vfio

namespace nv2pt::vfio {
namespace {

using namespace testing;

// Every container call from several threads at once: nothing crashes, every call ends with a valid errno, and the
// invariants hold afterwards (the TSan build runs this too).
TEST(SpaprTce, MixedCallsFromManyThreadsKeepTheInvariants) {
  mm::AddressSpace as(process_options(1));
  NvlinkGroup g(4);
  Container c;
  ASSERT_TRUE(c.attach_group(g.group));
  ASSERT_TRUE(c.set_iommu(VFIO_SPAPR_TCE_v2_IOMMU));
  SpaprTceIommu& iommu = *c.iommu();
  ClientMemory a(4 * MiB), b(4 * MiB);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> calls{0};
  auto expect_errno = [](const Result<void>& r, std::initializer_list<Errno> allowed) {
    if (r) return;
    EXPECT_TRUE(std::find(allowed.begin(), allowed.end(), r.error()) != allowed.end()) << errno_name(r.error());
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      uint32_t seed = 0x9e3779b9u * (t + 1);
      while (!stop) {
        seed = seed * 1664525u + 1013904223u;
        const ClientMemory& m = (seed >> 8) & 1 ? a : b;
        const uint64_t iova = (seed >> 16 & 1 ? 1ull << 59 : 0) + ((seed >> 20) & 3) * MiB;
        switch ((seed >> 24) % 6) {
          case 0: {
            vfio_iommu_spapr_register_memory r{sizeof(r), 0, m.ua(), m.size()};
            expect_errno(iommu.register_memory(as, r), {kEBUSY});
            break;
          }
          case 1: {
            vfio_iommu_spapr_register_memory r{sizeof(r), 0, m.ua(), m.size()};
            expect_errno(iommu.unregister_memory(as, r), {kENOENT, kEBUSY, kEPERM});
            break;
          }
          case 2: {
            vfio_iommu_type1_dma_map map{sizeof(map), 3, m.ua(), iova, 1 * MiB};
            expect_errno(iommu.map_dma(as, map), {kEPERM, kENXIO, kEINVAL});
            break;
          }
          case 3: {
            vfio_iommu_type1_dma_unmap unmap{sizeof(unmap), 0, iova, 1 * MiB};
            expect_errno(iommu.unmap_dma(as, unmap), {kEPERM, kENXIO});
            break;
          }
          case 4: {
            vfio_iommu_spapr_tce_create cr{sizeof(cr), 0, 16, 0, 1ull << 30, 2, 0, 0};
            expect_errno(iommu.create_window(as, cr), {kENOSPC});
            break;
          }
          case 5: {
            vfio_iommu_spapr_tce_remove rm{sizeof(rm), 0, seed >> 7 & 1 ? 1ull << 59 : 0};
            expect_errno(iommu.remove_window(as, rm), {kEINVAL});
            break;
          }
        }
        ++calls;
      }
    });
  }
  while (calls < 20000) std::this_thread::yield();
  stop = true;
  for (auto& th : threads) th.join();
  InvariantReport r = check_invariants(as, {&iommu});
  EXPECT_TRUE(r.ok()) << r.to_string();
  c.detach_group(g.group);
  EXPECT_EQ(as.locked_memory().locked_pages(), 0u);
  EXPECT_TRUE(as.registry().empty());
}

}  // namespace
}  // namespace nv2pt::vfio
