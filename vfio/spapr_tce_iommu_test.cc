// The sPAPR TCE container's groups and lifecycle: choosing the driver, attaching and detaching groups (the
// kernel's checks and their order), windows carried to a second group, and closing with everything set up. The
// other topics have their files beside this one (registration, windows, map, EEH, races); the invariant checker
// runs after each step.
#include "vfio/spapr_tce_iommu.h"

#include <gtest/gtest.h>

#include "base/fault_injection.h"
#include "vfio/spapr_tce_test_fixture.h"

namespace nv2pt::vfio {
namespace {

using namespace testing;

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
  EXPECT_EQ(c.ioctl(as, VFIO_IOMMU_MAP_DMA, 0).error(), kEINVAL);  // no driver yet
  ASSERT_TRUE(c.set_iommu(VFIO_SPAPR_TCE_v2_IOMMU));
  EXPECT_EQ(c.set_iommu(VFIO_SPAPR_TCE_v2_IOMMU).error(), kEINVAL);
  EXPECT_EQ(c.ioctl(as, VFIO_IOMMU_ENABLE, 0).error(), kENOTTY);  // v1 only
  EXPECT_EQ(c.ioctl(as, VFIO_GET_API_VERSION, 0), 0);
  EXPECT_EQ(c.ioctl(as, VFIO_IOMMU_MAP_DMA, 0).error(), kEPERM);  // nothing registered: not enabled
  vfio_iommu_spapr_register_memory reg{sizeof(reg), 0, 0, 0};
  EXPECT_EQ(c.ioctl(as, VFIO_IOMMU_SPAPR_REGISTER_MEMORY, reinterpret_cast<unsigned long>(&reg)).error(), kEINVAL);
  c.detach_group(g.group);
}

TEST(SpaprTce, V1RefusesIoda2AndCompoundGroups) {
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

TEST(SpaprTce, AttachRefusesMismatchedDuplicateAndDatalessGroups) {
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

// tce_iommu_attach_group allocates its list node only after the EBUSY and EPERM checks of the groups already
// attached: a failing allocation never hides them. The v1/v2 checks come after it, so there ENOMEM wins.
TEST(SpaprTce, AttachRefusalsComeBeforeItsAllocation) {
  NvlinkGroup nv(4);
  PhbGroup phb(7);
  LegacyGroup legacy(3);
  auto v2 = SpaprTceIommu::open(VFIO_SPAPR_TCE_v2_IOMMU);
  ASSERT_TRUE(v2);
  ASSERT_TRUE((*v2)->attach_group(nv.group));
  const auto attach_failing_first_allocation = [](SpaprTceIommu& iommu, Group& group) {
    ScopedFailNth arm(1);
    return iommu.attach_group(group);
  };
  EXPECT_EQ(attach_failing_first_allocation(**v2, nv.group).error(), kEBUSY);      // attached already
  EXPECT_EQ(attach_failing_first_allocation(**v2, legacy.group).error(), kEBUSY);  // no ownership ops
  EXPECT_EQ(attach_failing_first_allocation(**v2, phb.group).error(), kEPERM);     // other create_table ops
  auto v1 = SpaprTceIommu::open(VFIO_SPAPR_TCE_IOMMU);
  ASSERT_TRUE(v1);
  EXPECT_EQ(attach_failing_first_allocation(**v1, phb.group).error(), kENOMEM);
  EXPECT_EQ((*v1)->attach_group(phb.group).error(), kEPERM);
  EXPECT_EQ((*v2)->groups().size(), 1u);
  EXPECT_TRUE(phb.pe.bypass());  // never taken from the host
  (*v2)->detach_group(nv.group);
}

TEST_F(V2, SecondGroupGetsEveryWindow) {
  qemu_windows();
  NvlinkGroup g5(5);
  ASSERT_TRUE(container.attach_group(g5.group));
  EXPECT_EQ(g5.gpu.window(1), &window(1));
  EXPECT_EQ(g5.npu.window(1), &window(1));
  check();
  container.detach_group(g5.group);
}

TEST_F(V2, DetachKeepsTablesReattachReprograms) {
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

TEST(SpaprTce, CloseWithLiveMappingsRestoresLockedMemory) {
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

TEST(SpaprTce, ProcessExitWithEverythingSetUpRestoresEverything) {
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
