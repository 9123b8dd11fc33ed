// The sPAPR TCE container's EEH pass-through (VFIO_EEH_PE_OP): ops reach every attached group's PE.
#include "vfio/spapr_tce_iommu.h"

#include <gtest/gtest.h>

#include "vfio/spapr_tce_test_fixture.h"

namespace nv2pt::vfio {
namespace {

using namespace testing;

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

TEST(SpaprTce, EehOpWithoutGroupsIsZero) {  // kept from the kernel
  mm::AddressSpace as(testing::process_options(1));
  auto v2 = SpaprTceIommu::open(VFIO_SPAPR_TCE_v2_IOMMU);
  vfio_eeh_pe_op op{sizeof(op), 0, 42};  // even an unknown op: no group is asked
  EXPECT_EQ((*v2)->eeh_pe_op(as, op), 0);
}

// tce_iommu_ioctl asks the groups in list order, newest first, and returns the first non-zero result.
TEST_F(V2, EehOpAsksTheNewestGroupFirstAndStopsAtTheFirstNonZero) {
  NvlinkGroup g5{5};
  ASSERT_TRUE(container.attach_group(g5.group));
  struct Detach {
    Container& c;
    Group& g;
    ~Detach() { c.detach_group(g); }  // before g5 goes, even when an assertion fails
  } detach{container, g5.group};
  EXPECT_EQ(iommu().groups().front(), &g5.group);
  vfio_eeh_pe_op op{sizeof(op), 0, VFIO_EEH_PE_GET_STATE};
  g4.group.eeh().freeze();  // the older group stopped, the newer one normal: the loop goes on to the older
  EXPECT_EQ(iommu().eeh_pe_op(as, op), VFIO_EEH_PE_STATE_STOPPED);
  g5.group.eeh().freeze();
  op.op = VFIO_EEH_PE_UNFREEZE_IO;
  ASSERT_EQ(g5.group.eeh().op(op), 0);
  op.op = VFIO_EEH_PE_GET_STATE;  // both not normal: the newer group's state, the older is not asked
  EXPECT_EQ(iommu().eeh_pe_op(as, op), VFIO_EEH_PE_STATE_STOPPED_DMA);
}

// Groups attached before SET_IOMMU reach the driver from the container's list (newest first), and the driver adds
// each at its front: they end up oldest first.
TEST(Container, GroupsAttachedBeforeSetIommuAreAskedOldestFirst) {
  NvlinkGroup g4(4), g5(5);
  Container c;  // goes first: it detaches what is still attached
  ASSERT_TRUE(c.attach_group(g4.group));
  ASSERT_TRUE(c.attach_group(g5.group));
  EXPECT_EQ(c.groups().front(), &g5.group);
  ASSERT_TRUE(c.set_iommu(VFIO_SPAPR_TCE_v2_IOMMU));
  EXPECT_EQ(c.iommu()->groups().front(), &g4.group);
  g4.group.eeh().freeze();
  g5.group.eeh().freeze();
  vfio_eeh_pe_op op{sizeof(op), 0, VFIO_EEH_PE_UNFREEZE_IO};
  ASSERT_EQ(g4.group.eeh().op(op), 0);
  op.op = VFIO_EEH_PE_GET_STATE;
  mm::AddressSpace as(process_options(1));
  EXPECT_EQ(c.ioctl(as, VFIO_EEH_PE_OP, reinterpret_cast<unsigned long>(&op)), VFIO_EEH_PE_STATE_STOPPED_DMA);
}

}  // namespace
}  // namespace nv2pt::vfio
