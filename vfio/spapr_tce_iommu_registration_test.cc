// The sPAPR TCE v2 container's memory pre-registration (REGISTER_MEMORY / UNREGISTER_MEMORY): alignment, sharing
// between containers, GPU RAM, locked-memory limits, and the address-space binding.
#include "vfio/spapr_tce_iommu.h"

#include <gtest/gtest.h>

#include "vfio/spapr_tce_test_fixture.h"

namespace nv2pt::vfio {
namespace {

using namespace testing;

TEST_F(V2, Register1GiBChargesAndEnablesMap) {
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

TEST_F(V2, RegisterRejectsMisalignmentAndWrap) {
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

TEST_F(V2, RegisterTwiceOnOneContainerIsEBUSY) {
  ClientMemory m(1 * MiB);
  ASSERT_TRUE(reg(m.ua(), 1 * MiB));
  EXPECT_EQ(reg(m.ua(), 1 * MiB).error(), kEBUSY);
  EXPECT_EQ(locked(), 16u);
  EXPECT_EQ(iommu().registrations().front()->used(), 1u);
}

TEST_F(V2, SecondContainerSharesTheRegion) {
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

TEST_F(V2, OverlappingRegisterIsEINVALAndLeavesNoCharge) {
  ClientMemory m(2 * MiB);
  ASSERT_TRUE(reg(m.ua(), 1 * MiB));
  EXPECT_EQ(reg(m.ua() + 512 * KiB, 1 * MiB).error(), kEINVAL);
  EXPECT_EQ(reg(m.ua(), 2 * MiB).error(), kEINVAL);
  EXPECT_EQ(locked(), 16u);
  EXPECT_EQ(as.pinner().pinned_pages(), 16u);
}

TEST_F(V2, RegisterInsideGpuRamAndOverAHoleIsEFAULT) {
  ClientMemory gpu(16 * MiB, PROT_NONE);
  gpu_ram(gpu);
  EXPECT_EQ(reg(gpu.ua() + 1 * MiB, 1 * MiB).error(), kEFAULT);  // GUP refuses the PFN mapping
  ClientMemory m(2 * MiB);
  m.unmap(1 * MiB, 64 * KiB);
  EXPECT_EQ(reg(m.ua(), 2 * MiB).error(), kEFAULT);  // never a positive count
  EXPECT_EQ(locked(), 0u);
  EXPECT_EQ(as.pinner().pinned_pages(), 0u);
}

TEST_F(V2, RegisterExactlyTheGpuRamMmapSharesTheDeviceRegion) {
  ClientMemory gpu(16 * MiB, PROT_NONE);
  mm::RegionRef dev = gpu_ram(gpu);
  ASSERT_TRUE(reg(gpu.ua(), gpu.size()));
  EXPECT_EQ(locked(), 0u);
  EXPECT_EQ(dev->used(), 2u);
  ASSERT_TRUE(unreg(gpu.ua(), gpu.size()));
  EXPECT_EQ(dev->used(), 1u);
  EXPECT_TRUE(as.registry().put(dev));
}

TEST_F(V2, RegisterOverRlimitMemlockIsENOMEMUnlessCapIpcLock) {
  ClientMemory m(4 * MiB);
  as.locked_memory().set_policy(mm::MemlockPolicy::fixed(2 * MiB, false));
  EXPECT_EQ(reg(m.ua(), 4 * MiB).error(), kENOMEM);
  EXPECT_EQ(locked(), 0u);
  as.locked_memory().set_policy(mm::MemlockPolicy::fixed(2 * MiB, true));
  EXPECT_TRUE(reg(m.ua(), 4 * MiB));
  EXPECT_EQ(locked(), 64u);
}

TEST_F(V2, RegisterUnmappedIsEFAULTAndRolledBack) {
  ClientMemory m(1 * MiB, PROT_NONE);
  m.unmap(0, 1 * MiB);
  EXPECT_EQ(reg(m.ua(), 1 * MiB).error(), kEFAULT);
  EXPECT_EQ(locked(), 0u);
}

TEST_F(V2, RegisterSizeZeroIsEINVAL) {  // the kernel's ENOMEM is an accident
  ClientMemory m(1 * MiB);
  EXPECT_EQ(reg(m.ua(), 0).error(), kEINVAL);
}

TEST_F(V2, UnregisterUnknownOrForeignIsENOENTAndBeforeBindingEPERM) {
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

// tce_iommu_release puts every region the container registered. One that another container's TCEs still map cannot
// go (mm_iommu_put: EBUSY): the kernel warns and it stays registered, pinned and charged for good. So does the
// model, which marks it orphaned; the invariants hold throughout.
TEST_F(V2, ReleaseWhileAnotherContainerMapsTheRegionKeepsItOrphaned) {
  ClientMemory m(1 * MiB);
  NvlinkGroup g6(6);
  auto other = std::make_unique<Container>();
  ASSERT_TRUE(other->attach_group(g6.group));
  ASSERT_TRUE(other->set_iommu(VFIO_SPAPR_TCE_v2_IOMMU));
  vfio_iommu_spapr_register_memory r{sizeof(r), 0, m.ua(), 1 * MiB};
  ASSERT_TRUE(other->iommu()->register_memory(as, r));
  ClientMemory own(64 * KiB);
  ASSERT_TRUE(reg(own.ua(), 64 * KiB));  // binds this container to the address space
  qemu_windows();
  ASSERT_TRUE(map(kWindow1, m.ua(), 128 * KiB));  // through this container: the mm's registrations are shared
  const uint64_t charged_by_this = iommu().charged_pages();
  other.reset();  // the registering container goes first
  ASSERT_EQ(as.registry().size(), 2u);
  const mm::RegionRef region = as.registry().lookup(m.ua(), 1 * MiB);
  ASSERT_NE(region, nullptr);
  EXPECT_TRUE(region->orphaned());
  EXPECT_EQ(locked(), charged_by_this + 1 + 16) << "still charged";
  check();
  ASSERT_TRUE(unmap(kWindow1, 128 * KiB));
  EXPECT_EQ(region->mapped(), 1u);
  EXPECT_EQ(unreg(m.ua(), 1 * MiB).error(), kENOENT) << "this container never registered it";
  EXPECT_EQ(as.pinner().pinned_pages(), 1u + 16);
  check();
  EXPECT_TRUE(unreg(own.ua(), 64 * KiB));
  EXPECT_EQ(as.registry().size(), 1u) << "kept for good";
}

TEST_F(V2, UnregisterWhileMappedIsEBUSY) {  // the kernel returns 0 and leaks the region
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

TEST_F(V2, AnotherProcessGetsEPERM) {
  ClientMemory m(1 * MiB);
  ASSERT_TRUE(reg(m.ua(), 512 * KiB));
  mm::AddressSpace other(process_options(2));
  EXPECT_EQ(reg(m.ua() + 512 * KiB, 512 * KiB, &other).error(), kEPERM);
  vfio_iommu_spapr_tce_info info{sizeof(info)};
  EXPECT_EQ(iommu().get_info(other, info).error(), kEPERM);
  // CHECK_EXTENSION has no mm check.
  EXPECT_EQ(iommu().ioctl(other, VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_v2_IOMMU), 1);
}

// tce_iommu_ioctl's order: the foreign-process check before anything else, and what each call checks before
// copy_from_user comes before the EFAULT of a bad pointer.
TEST_F(V2, AnotherProcessIsEpermBeforeAnyOtherCheck) {
  ClientMemory m(1 * MiB);
  ASSERT_TRUE(reg(m.ua(), 512 * KiB));  // binds the container to `as`
  mm::AddressSpace other(process_options(2));
  EXPECT_EQ(iommu().ioctl(other, VFIO_IOMMU_MAP_DMA, 0).error(), kEPERM);  // not EFAULT
  EXPECT_EQ(iommu().ioctl(other, VFIO_IOMMU_SPAPR_TCE_GET_INFO, 0).error(), kEPERM);
  EXPECT_EQ(iommu().ioctl(other, VFIO_IOMMU_ENABLE, 0).error(), kEPERM);  // not the v1 call's ENOTTY
  EXPECT_EQ(iommu().ioctl(other, _IO(VFIO_TYPE, VFIO_BASE + 30), 0).error(), kEPERM);  // not ENOTTY
  EXPECT_EQ(iommu().ioctl(other, VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_v2_IOMMU), 1);
}

TEST(SpaprTce, AnotherProcessGetsEpermOnAV1ContainerForV2Calls) {
  mm::AddressSpace as(process_options(1));
  LegacyGroup g(1);
  auto v1 = SpaprTceIommu::open(VFIO_SPAPR_TCE_IOMMU);
  ASSERT_TRUE(v1);
  ASSERT_TRUE((*v1)->attach_group(g.group));
  ASSERT_TRUE((*v1)->enable(as));
  mm::AddressSpace other(process_options(2));
  EXPECT_EQ((*v1)->ioctl(other, VFIO_IOMMU_SPAPR_REGISTER_MEMORY, 0).error(), kEPERM);
  EXPECT_EQ((*v1)->ioctl(as, VFIO_IOMMU_SPAPR_REGISTER_MEMORY, 0).error(), kENOTTY);
  EXPECT_EQ((*v1)->ioctl(as, VFIO_IOMMU_SPAPR_TCE_CREATE, 0).error(), kENOTTY);
  ASSERT_TRUE((*v1)->disable(as));
  (*v1)->detach_group(g.group);
}

TEST(SpaprTce, MapUnmapCheckEnabledAndInfoCreateRemoveCheckGroupsBeforeTheCopy) {
  mm::AddressSpace as(process_options(1));
  auto v2 = SpaprTceIommu::open(VFIO_SPAPR_TCE_v2_IOMMU);
  ASSERT_TRUE(v2);
  SpaprTceIommu& c = **v2;
  // Nothing attached, nothing registered: each of these stops before it reads its (null) argument.
  EXPECT_EQ(c.ioctl(as, VFIO_IOMMU_SPAPR_TCE_GET_INFO, 0).error(), kENXIO);
  EXPECT_EQ(c.ioctl(as, VFIO_IOMMU_MAP_DMA, 0).error(), kEPERM);
  EXPECT_EQ(c.ioctl(as, VFIO_IOMMU_UNMAP_DMA, 0).error(), kEPERM);
  EXPECT_EQ(c.ioctl(as, VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY, 0).error(), kEPERM);  // no process bound yet
  EXPECT_EQ(c.ioctl(as, VFIO_IOMMU_SPAPR_TCE_CREATE, 0).error(), kENXIO);
  EXPECT_EQ(c.ioctl(as, VFIO_IOMMU_SPAPR_TCE_REMOVE, 0).error(), kENXIO);
  EXPECT_EQ(c.address_space(), &as);  // CREATE bound the process before it found no group (tce_iommu_mm_set)
  NvlinkGroup g(4);
  ASSERT_TRUE(c.attach_group(g.group));
  EXPECT_EQ(c.ioctl(as, VFIO_IOMMU_SPAPR_TCE_GET_INFO, 0).error(), kEFAULT);
  EXPECT_EQ(c.ioctl(as, VFIO_IOMMU_SPAPR_TCE_CREATE, 0).error(), kEFAULT);
  EXPECT_EQ(c.ioctl(as, VFIO_IOMMU_SPAPR_REGISTER_MEMORY, 0).error(), kEFAULT);
  ClientMemory m(1 * MiB);
  vfio_iommu_spapr_register_memory r{sizeof(r), 0, m.ua(), 1 * MiB};
  ASSERT_EQ(c.ioctl(as, VFIO_IOMMU_SPAPR_REGISTER_MEMORY, reinterpret_cast<unsigned long>(&r)), 0);
  EXPECT_EQ(c.ioctl(as, VFIO_IOMMU_MAP_DMA, 0).error(), kEFAULT);  // enabled now: the copy is reached
  ASSERT_EQ(c.ioctl(as, VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY, reinterpret_cast<unsigned long>(&r)), 0);
  c.detach_group(g.group);
}

}  // namespace
}  // namespace nv2pt::vfio
