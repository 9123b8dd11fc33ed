#include "vfio/eeh_pe.h"

#include <gtest/gtest.h>

namespace nv2pt::vfio {
namespace {

long run(EehPe& pe, uint32_t op) {
  vfio_eeh_pe_op o{sizeof(o), 0, op};
  auto r = pe.op(o);
  EXPECT_TRUE(r) << "op " << op;
  return r ? *r : -1;
}

long get_state(EehPe& pe) { return run(pe, VFIO_EEH_PE_GET_STATE); }

TEST(EehPe, GetStateBeforeEnableReadsThePhb) {
  EehPe pe;
  EXPECT_EQ(get_state(pe), VFIO_EEH_PE_STATE_NORMAL);
  pe.freeze();
  EXPECT_EQ(get_state(pe), VFIO_EEH_PE_STATE_STOPPED);
}

TEST(EehPe, DisableChangesNothing) {
  EehPe pe;
  EXPECT_EQ(run(pe, VFIO_EEH_PE_ENABLE), 0);
  EXPECT_EQ(run(pe, VFIO_EEH_PE_DISABLE), 0);
  EXPECT_EQ(get_state(pe), VFIO_EEH_PE_STATE_NORMAL);
  pe.freeze();
  EXPECT_EQ(run(pe, VFIO_EEH_PE_DISABLE), 0);
  EXPECT_EQ(get_state(pe), VFIO_EEH_PE_STATE_STOPPED);
}

TEST(EehPe, EnableThawsAFrozenPe) {
  EehPe pe;
  pe.freeze();
  EXPECT_EQ(run(pe, VFIO_EEH_PE_ENABLE), 0);
  EXPECT_EQ(get_state(pe), VFIO_EEH_PE_STATE_NORMAL);
}

TEST(EehPe, UnfreezeIoLeavesDmaStopped) {
  EehPe pe;
  pe.freeze();
  EXPECT_EQ(run(pe, VFIO_EEH_PE_UNFREEZE_IO), 0);
  EXPECT_EQ(get_state(pe), VFIO_EEH_PE_STATE_STOPPED_DMA);
  EXPECT_EQ(run(pe, VFIO_EEH_PE_UNFREEZE_DMA), 0);
  EXPECT_EQ(get_state(pe), VFIO_EEH_PE_STATE_NORMAL);
}

TEST(EehPe, MmioOnlyFreezeReadsUnavail) {
  EehPe pe;
  pe.freeze();
  EXPECT_EQ(run(pe, VFIO_EEH_PE_UNFREEZE_DMA), 0);
  EXPECT_EQ(get_state(pe), VFIO_EEH_PE_STATE_UNAVAIL);
  EXPECT_EQ(run(pe, VFIO_EEH_PE_UNFREEZE_IO), 0);
  EXPECT_EQ(get_state(pe), VFIO_EEH_PE_STATE_NORMAL);
}

TEST(EehPe, HotResetFreezesThePeUntilDeactivate) {
  EehPe pe;
  EXPECT_EQ(run(pe, VFIO_EEH_PE_RESET_HOT), 0);
  EXPECT_TRUE(pe.reset_asserted());
  EXPECT_EQ(get_state(pe), VFIO_EEH_PE_STATE_STOPPED);
  EXPECT_EQ(run(pe, VFIO_EEH_PE_CONFIGURE), 0);
  EXPECT_EQ(get_state(pe), VFIO_EEH_PE_STATE_STOPPED);
  EXPECT_EQ(run(pe, VFIO_EEH_PE_RESET_DEACTIVATE), 0);
  EXPECT_FALSE(pe.reset_asserted());
  EXPECT_EQ(get_state(pe), VFIO_EEH_PE_STATE_NORMAL);
}

TEST(EehPe, FundamentalResetFreezesThePeUntilDeactivate) {
  EehPe pe;
  EXPECT_EQ(run(pe, VFIO_EEH_PE_RESET_FUNDAMENTAL), 0);
  EXPECT_TRUE(pe.reset_asserted());
  EXPECT_EQ(get_state(pe), VFIO_EEH_PE_STATE_STOPPED);
  EXPECT_EQ(run(pe, VFIO_EEH_PE_RESET_DEACTIVATE), 0);
  EXPECT_EQ(get_state(pe), VFIO_EEH_PE_STATE_NORMAL);
}

TEST(EehPe, DeactivateThawsAFrozenPeAndConfigureDoesNot) {
  EehPe pe;
  pe.freeze();
  EXPECT_EQ(run(pe, VFIO_EEH_PE_CONFIGURE), 0);
  EXPECT_EQ(get_state(pe), VFIO_EEH_PE_STATE_STOPPED);
  EXPECT_EQ(run(pe, VFIO_EEH_PE_RESET_DEACTIVATE), 0);
  EXPECT_EQ(get_state(pe), VFIO_EEH_PE_STATE_NORMAL);
}

TEST(EehPe, InjectErrFreezesThePeAtOnce) {
  EehPe pe;
  vfio_eeh_pe_op o{sizeof(o), 0, VFIO_EEH_PE_INJECT_ERR};
  o.err.type = 1;
  o.err.func = 19;
  EXPECT_EQ(pe.op(o), 0);
  EXPECT_EQ(get_state(pe), VFIO_EEH_PE_STATE_STOPPED);
}

TEST(EehPe, InjectErrOutOfRangeIsEINVALAndFreezesNothing) {
  EehPe pe;
  vfio_eeh_pe_op o{sizeof(o), 0, VFIO_EEH_PE_INJECT_ERR};
  o.err.type = 2;
  EXPECT_EQ(pe.op(o).error(), kEINVAL);
  o.err.type = 0;
  o.err.func = 20;
  EXPECT_EQ(pe.op(o).error(), kEINVAL);
  EXPECT_EQ(get_state(pe), VFIO_EEH_PE_STATE_NORMAL);
}

TEST(EehPe, UnknownOpIsEINVAL) {
  EehPe pe;
  vfio_eeh_pe_op o{sizeof(o), 0, 10};
  EXPECT_EQ(pe.op(o).error(), kEINVAL);
}

}  // namespace
}  // namespace nv2pt::vfio
