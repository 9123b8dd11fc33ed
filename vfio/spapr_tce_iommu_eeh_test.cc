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

TEST(SpaprTce, Q13_EehOpWithoutGroupsIsZero) {  // kept from the kernel
  mm::AddressSpace as(testing::process_options(1));
  auto v2 = SpaprTceIommu::open(VFIO_SPAPR_TCE_v2_IOMMU);
  vfio_eeh_pe_op op{sizeof(op), 0, 42};  // even an unknown op: no group is asked
  EXPECT_EQ((*v2)->eeh_pe_op(as, op), 0);
}

}  // namespace
}  // namespace nv2pt::vfio
