// The container fd's ioctls as a client reaches them (Container::ioctl, vfio_fops_unl_ioctl): the three the
// container answers itself, and everything else only once SET_IOMMU chose a driver.
#include "vfio/container.h"

#include <gtest/gtest.h>

#include "vfio/test_host.h"

namespace nv2pt::vfio {
namespace {

using namespace testing;

TEST(ContainerIoctl, EverythingButTheContainersOwnCallsIsEinvalBeforeSetIommu) {
  mm::AddressSpace as(process_options(1));
  Container c;
  NvlinkGroup g(4);
  ASSERT_TRUE(c.attach_group(g.group));
  // vfio_fops_unl_ioctl with no driver: its initial -EINVAL, not ENOTTY, for any number.
  for (unsigned long cmd : {VFIO_IOMMU_MAP_DMA, VFIO_IOMMU_UNMAP_DMA, VFIO_IOMMU_SPAPR_TCE_GET_INFO, VFIO_IOMMU_ENABLE,
                            VFIO_IOMMU_SPAPR_REGISTER_MEMORY, VFIO_EEH_PE_OP, _IO(VFIO_TYPE, VFIO_BASE + 30)}) {
    EXPECT_EQ(c.ioctl(as, cmd, 0).error(), kEINVAL) << std::hex << cmd;
  }
  EXPECT_EQ(c.ioctl(as, VFIO_GET_API_VERSION, 0), VFIO_API_VERSION);
  EXPECT_EQ(c.ioctl(as, VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_v2_IOMMU), 1);
  EXPECT_EQ(c.ioctl(as, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU), 0);
  EXPECT_EQ(c.ioctl(as, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU).error(), kENODEV);
  ASSERT_EQ(c.ioctl(as, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_v2_IOMMU), 0);
  // Now the driver's: ENOTTY for what it does not have.
  EXPECT_EQ(c.ioctl(as, _IO(VFIO_TYPE, VFIO_BASE + 30), 0).error(), kENOTTY);
  EXPECT_EQ(c.ioctl(as, VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_v2_IOMMU), 1);
  EXPECT_EQ(c.ioctl(as, VFIO_GET_API_VERSION, 0), VFIO_API_VERSION);
  c.detach_group(g.group);
  // The last group out releases the driver: back to EINVAL.
  EXPECT_EQ(c.ioctl(as, VFIO_IOMMU_ENABLE, 0).error(), kEINVAL);
}

}  // namespace
}  // namespace nv2pt::vfio
