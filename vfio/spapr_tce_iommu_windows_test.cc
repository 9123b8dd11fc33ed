// The sPAPR TCE container's DMA windows: GET_INFO, the default window, TCE_CREATE and TCE_REMOVE, table geometry
// and charge, and how the windows are programmed into the table group and its PEs.
#include "vfio/spapr_tce_iommu.h"

#include <gtest/gtest.h>

#include <cstring>

#include "vfio/host.h"
#include "vfio/spapr_tce_test_fixture.h"

namespace nv2pt::vfio {
namespace {

using namespace testing;

TEST(SpaprTce, GetInfoIsENXIOWithoutAGroupAndDescribesTheCompoundGroup) {
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

TEST_F(V2, GetInfoWritesOnlyWhatArgszCoversAndRefusesShortArgsz) {
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

TEST(SpaprTce, V1HasNoDdwFlag) {
  mm::AddressSpace as(process_options(1));
  LegacyGroup g(3);
  auto v1 = SpaprTceIommu::open(VFIO_SPAPR_TCE_IOMMU);
  ASSERT_TRUE((*v1)->attach_group(g.group));
  vfio_iommu_spapr_tce_info info{sizeof(info)};
  ASSERT_TRUE((*v1)->get_info(as, info));
  EXPECT_EQ(info.flags, 0u);
  (*v1)->detach_group(g.group);
}

TEST_F(V2, FirstMapCreatesTheDefaultWindow) {
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

TEST_F(V2, RemoveWhilePendingThenMapIsENXIO) {
  ClientMemory m(1 * MiB);
  ASSERT_TRUE(reg(m.ua(), 1 * MiB));
  ASSERT_TRUE(remove(0));
  EXPECT_TRUE(iommu().windows().empty());
  EXPECT_EQ(map(0, m.ua(), 64 * KiB).error(), kENXIO);
}

TEST_F(V2, CreateLandsInSlot1WithDefaultWindow) {
  const uint64_t start = locked();
  ASSERT_EQ(create(16, 1ull << 46, 2), kWindow1);  // the pending default window is created first, in slot 0
  EXPECT_EQ(iommu().windows().size(), 2u);
  EXPECT_EQ(locked() - start, 128u + 262152u);
  EXPECT_EQ(window(1).allocated_bytes(), 512 * KiB);
  ASSERT_TRUE(remove(0));
  ASSERT_TRUE(remove(kWindow1));
  EXPECT_EQ(create(16, 1ull << 46, 2), 0u);  // slot 0 free: start 0
}

TEST_F(V2, CreateRejectsBadLevelsSizesAndPageShifts) {
  ASSERT_TRUE(remove(0));
  EXPECT_EQ(create(16, 1ull << 40, 0).error(), kEINVAL);
  EXPECT_EQ(create(16, 1ull << 40, 6).error(), kEINVAL);
  EXPECT_EQ(create(16, 3ull << 40, 2).error(), kEINVAL);
  EXPECT_EQ(create(24, 1ull << 40, 2).error(), kEINVAL);  // 16M not in the compound group's 4K|64K
  EXPECT_EQ(locked(), 0u);
}

TEST_F(V2, FiftyFiveBitRuleRollsBackTheCharge) {  // the kernel leaks the 16386.125 MiB charge
  ASSERT_TRUE(remove(0));
  EXPECT_EQ(create(16, 1ull << 46, 3).error(), kEINVAL);
  EXPECT_EQ(locked(), 0u);
}

TEST_F(V2, OneLevel2To46IsENOMEMWithNoCharge) {
  ASSERT_TRUE(remove(0));
  EXPECT_EQ(create(16, 1ull << 46, 1).error(), kENOMEM);
  EXPECT_EQ(locked(), 0u);
}

TEST_F(V2, CreateRefusesAThirdWindowBadFlagsShortArgszAndV1) {
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

TEST_F(V2, RemoveClearsRestoresAndFrees) {
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

TEST_F(V2, RemoveByAnAddressInsideTheWindow) {  // kept from tce_iommu_find_table
  qemu_windows();
  EXPECT_TRUE(remove(kWindow1 + 64 * KiB));
  EXPECT_EQ(iommu().windows().size(), 1u);
}

TEST_F(V2, SmallWindowIsWidened) {  // kept, and the real size reported
  ClientMemory m(1 * MiB);
  ASSERT_TRUE(reg(m.ua(), 1 * MiB));
  ASSERT_TRUE(remove(0));
  ASSERT_EQ(create(16, 256 * MiB, 1), 0u);
  EXPECT_EQ(window(0).bus_end(), 512 * MiB);
  EXPECT_TRUE(map(300 * MiB, m.ua(), 64 * KiB));
}

TEST_F(V2, NpuPeHoldsTheLastWindow) {
  ASSERT_TRUE(create(16, 1ull << 40, 2));  // default (slot 0) then slot 1
  EXPECT_EQ(g4.gpu.window_count(), 2u);
  EXPECT_EQ(g4.npu.window_count(), 1u);
  EXPECT_EQ(g4.npu.window(1), &window(1));
}

// On the second chip the bridges (0007:00:...) sort before their GPU (0035:...): the compound group's first member
// is an NPU PE, whose single TVE keeps only the last window. KVM's SET_SPAPR_TCE finds the windows through the
// group, so the group must still answer for both.
TEST(SpaprTce, CompoundGroupWithTheNpuFirstAnswersForBothWindows) {
  mm::AddressSpace as(process_options(1));
  auto host = Host::create(platform::Machine::load_default());
  ASSERT_TRUE(host);
  Group* group = (*host)->open_group(10).value();
  auto container = (*host)->open_container();
  ASSERT_TRUE(group->set_container(container));
  ASSERT_TRUE(container->set_iommu(VFIO_SPAPR_TCE_v2_IOMMU));
  ASSERT_EQ(group->table_group()->members().front()->kind(), iommu::Pe::Kind::kNpu2);
  vfio_iommu_spapr_tce_create cr{sizeof(cr), 0, 16, 0, 1ull << 40, 2, 0};
  ASSERT_TRUE(container->iommu()->create_window(as, cr));  // the pending default window (slot 0), then slot 1
  const auto windows = container->iommu()->windows();
  ASSERT_EQ(windows.size(), 2u);
  for (const SpaprTceIommu::WindowInfo& w : windows) EXPECT_EQ(group->table_group()->table(w.slot), w.table);
  (*host)->release_group(*group);
}

TEST_F(V2, SetWindowFailureOnAMemberUndoesTheCreate) {  // firmware errors become EIO
  ASSERT_TRUE(remove(0));
  g4.npu.fail_next_set_window();
  EXPECT_EQ(create(16, 1ull << 40, 2).error(), kEIO);
  EXPECT_EQ(g4.gpu.window_count(), 0u);
  EXPECT_TRUE(iommu().windows().empty());
  EXPECT_EQ(locked(), 0u);
}

}  // namespace
}  // namespace nv2pt::vfio
