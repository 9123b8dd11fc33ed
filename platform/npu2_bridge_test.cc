#include "platform/npu2_bridge.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "platform/pci_test_util.h"

namespace nv2pt::platform {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;
using B = Npu2Bridge;

std::unique_ptr<B> make_bridge(uint32_t link = 1, uint32_t chip = 0) {
  return B::create(PciAddress::parse("0006:00:00.1").value(), B::Identity{}, B::Placement{chip, link}).value();
}

struct ProcedureRun {
  uint32_t status = 0;
  bool saw_in_progress = false;
  bool saw_training = false;
};

// What a driver does through config space: write the number, poll the status until complete.
ProcedureRun run_procedure(B& b, uint32_t procedure) {
  ProcedureRun r;
  b.config_write(B::kProcControl, 4, procedure);
  for (int i = 0; i < 100; ++i) {
    r.status = b.config_read(B::kProcStatus, 4);
    if (r.status & B::kStatusInProgress) r.saw_in_progress = true;
    if (b.link_state() == LinkState::kTraining) r.saw_training = true;
    if (r.status & B::kStatusComplete) break;
  }
  return r;
}

void train(B& b) {
  for (uint32_t p : {B::kResetNtl, B::kPhyReset, B::kPhyTxZcal, B::kPhyRxDccal, B::kPhyTxRxcalEnable,
                     B::kPhyRxTraining, B::kPhyTxRxcalDisable}) {
    ASSERT_EQ(run_procedure(b, p).status, B::kStatusComplete) << "procedure " << p;
  }
}

TEST(Npu2Bridge, PresentsSkibootsEmulatedDevice) {
  auto b = make_bridge();
  EXPECT_EQ(b->config_size(), 256u);
  EXPECT_EQ(b->config_read(0x00, 4), 0x04ea1014u);
  EXPECT_EQ(b->config_read(0x08, 4), 0x06800001u);  // rev 01, class 0x068000 from the topology
  EXPECT_EQ(b->config_read(0x0e, 1), 0x80u);        // multi-function header
  EXPECT_EQ(b->config_read(0x04, 4), 0x00100000u);  // capability list bit
  EXPECT_EQ(b->config_read(0x2c, 4), 0u);
  EXPECT_EQ(b->config_read(0x30, 4), 0xffffffffu);  // skiboot's read-only "zero sized" ROM BAR
  EXPECT_EQ(b->config_read(0x3d, 1), 0x01u);        // INTA
  EXPECT_TRUE(b->has_flr());
  EXPECT_EQ(b->config_read(0x100, 4), 0xffffffffu);  // beyond the 256-byte space
}

TEST(Npu2Bridge, CapabilityChainCarriesTheProcedureInterface) {
  auto b = make_bridge(/*link=*/3);
  EXPECT_THAT(testing::capability_chain(*b), ElementsAre(Pair(0x40u, 0x10), Pair(0x80u, 0x09)));
  EXPECT_EQ(b->config_read(B::kPcieCap + 2, 2), 0x0002u);                 // v2 endpoint
  EXPECT_EQ(b->config_read(B::kPcieCap + 4, 4), 0x10000fc0u);             // FLR, no-limit latencies, MPS 128
  EXPECT_EQ(b->config_read(B::kPcieCap + 8, 4), 0x00002810u);
  EXPECT_EQ(b->config_read(B::kPcieCap + 0xc, 4), 0x12u);
  EXPECT_EQ(b->config_read(B::kVendorCap + 2, 1), 0x10u);  // length
  EXPECT_EQ(b->config_read(B::kVendorCap + 3, 1), 0x01u);  // version
  EXPECT_EQ(b->config_read(B::kLinkIndex, 1), 3u);
  EXPECT_EQ(b->config_read(B::kLinkFlags, 1), 0u);
  b->set_pci_linked(true);
  EXPECT_EQ(b->config_read(B::kLinkFlags, 1), 1u);
  EXPECT_TRUE(testing::extended_capability_chain(*b).empty());
}

TEST(Npu2Bridge, BarsFollowSkibootsSizingTrap) {
  auto b = make_bridge(/*link=*/3, /*chip=*/8);
  const uint64_t ntl = (uint64_t{8} << 42) + 0x0006030201600000ull + 3 * 0x20000;
  const uint64_t genid = (uint64_t{8} << 42) + 0x00060302016c0000ull + 1 * 0x20000 + 0x10000;  // stack 1, brick 1
  EXPECT_EQ(b->ntl_base(), ntl);
  EXPECT_EQ(b->genid_base(), genid);
  EXPECT_EQ(b->config_read(0x10, 4), static_cast<uint32_t>(ntl) | 0x4);
  EXPECT_EQ(b->config_read(0x14, 4), static_cast<uint32_t>(ntl >> 32));
  EXPECT_EQ(b->config_read(0x18, 4), static_cast<uint32_t>(genid) | 0x4);
  // All-ones arms a one-shot read that returns the size itself.
  b->config_write(0x10, 4, 0xffffffff);
  EXPECT_EQ(b->config_read(0x10, 4), 0x00020000u);
  EXPECT_EQ(b->config_read(0x10, 4), static_cast<uint32_t>(ntl) | 0x4);
  b->config_write(0x14, 4, 0xffffffff);
  EXPECT_EQ(b->config_read(0x14, 4), 0u);
  EXPECT_EQ(testing::probe_bar_size(*b, 0), B::kNtlBarSize);
  EXPECT_EQ(testing::probe_bar_size(*b, 2), B::kGenidBarSize);
  EXPECT_EQ(b->config_read(0x10, 4), static_cast<uint32_t>(ntl) | 0x4);  // probing put the base back
  // Sub-dword writes are refused; a moved base sticks while memory decoding is off, not while it is on.
  b->config_write(0x10, 2, 0);
  EXPECT_EQ(b->config_read(0x10, 4), static_cast<uint32_t>(ntl) | 0x4);
  b->config_write(0x04, 2, 0x0002);
  b->config_write(0x10, 4, 0x10000000);
  EXPECT_EQ(b->config_read(0x10, 4), static_cast<uint32_t>(ntl) | 0x4);
  b->config_write(0x04, 2, 0x0000);
  b->config_write(0x10, 4, 0x10000000);
  EXPECT_EQ(b->config_read(0x10, 4), 0x10000004u);
  EXPECT_EQ(b->bar(0).size, B::kNtlBarSize);
  EXPECT_TRUE(b->bar(0).mem64);
  EXPECT_EQ(b->bar(1).size, 0u);
  EXPECT_EQ(b->bar(2).size, B::kGenidBarSize);
  EXPECT_GE(b->bar_fd(0), 0);
  EXPECT_GE(b->bar_fd(2), 0);
  EXPECT_EQ(b->bar_fd(4), -1);
}

TEST(Npu2Bridge, ProcedureInterfaceTrainsTheLinkThroughConfigWritesOnly) {
  auto b = make_bridge();
  EXPECT_EQ(b->link_state(), LinkState::kUntrained);
  const ProcedureRun reset_ntl = run_procedure(*b, B::kResetNtl);
  EXPECT_EQ(reset_ntl.status, B::kStatusComplete);
  EXPECT_EQ(b->config_read(B::kLinkFlags, 1) & B::kLinkFlagDlReset, B::kLinkFlagDlReset);
  EXPECT_EQ(b->link_state(), LinkState::kUntrained);

  const ProcedureRun phy_reset = run_procedure(*b, B::kPhyReset);
  EXPECT_EQ(phy_reset.status, B::kStatusComplete);
  EXPECT_TRUE(phy_reset.saw_in_progress);
  EXPECT_EQ(b->link_state(), LinkState::kTraining);
  EXPECT_EQ(b->config_read(B::kProcControl, 4), B::kPhyReset);
  EXPECT_EQ(run_procedure(*b, B::kPhyTxZcal).status, B::kStatusComplete);
  EXPECT_EQ(run_procedure(*b, B::kPhyRxDccal).status, B::kStatusComplete);
  EXPECT_EQ(run_procedure(*b, B::kPhyTxRxcalEnable).status, B::kStatusComplete);
  EXPECT_EQ(b->link_state(), LinkState::kTraining);
  const ProcedureRun training = run_procedure(*b, B::kPhyRxTraining);
  EXPECT_EQ(training.status, B::kStatusComplete);
  EXPECT_TRUE(training.saw_in_progress);
  EXPECT_TRUE(training.saw_training);
  EXPECT_EQ(b->link_state(), LinkState::kTrained);
  // Completed status is sticky until the next procedure.
  EXPECT_EQ(b->config_read(B::kProcStatus, 4), B::kStatusComplete);
  EXPECT_EQ(run_procedure(*b, B::kPhyTxRxcalDisable).status, B::kStatusComplete);
  EXPECT_EQ(run_procedure(*b, B::kCheckCredits).status, B::kStatusComplete);
  EXPECT_EQ(b->link_state(), LinkState::kTrained);
}

TEST(Npu2Bridge, UnsupportedProceduresAndRefusedAccesses) {
  auto b = make_bridge();
  // A fresh device runs "stop" on the first status read, as skiboot does.
  EXPECT_EQ(b->config_read(B::kProcStatus, 4), B::kStatusComplete | B::kCodeAborted);
  ASSERT_EQ(run_procedure(*b, B::kNop).status, B::kStatusComplete);
  for (uint32_t p : {2u, 3u, 14u, 0xffffffffu}) {
    EXPECT_EQ(run_procedure(*b, p).status, B::kStatusComplete | B::kCodeUnsupported) << p;
    EXPECT_EQ(b->config_read(B::kProcControl, 4), B::kNop);  // the number register keeps the last procedure
  }
  // Short accesses are refused: reads give the 0 default, writes do nothing.
  b->config_write(B::kProcControl, 2, B::kPhyReset);
  EXPECT_EQ(b->config_read(B::kProcControl, 4), B::kNop);
  EXPECT_EQ(b->config_read(B::kProcStatus, 2), 0u);
  b->config_write(B::kProcStatus, 4, 0);  // status writes are ignored
  EXPECT_EQ(b->config_read(B::kProcStatus, 4), B::kStatusComplete | B::kCodeUnsupported);
  EXPECT_EQ(b->link_state(), LinkState::kUntrained);
}

TEST(Npu2Bridge, RxTrainingWithoutThePhyProceduresFails) {
  auto b = make_bridge();
  const ProcedureRun r = run_procedure(*b, B::kPhyRxTraining);
  EXPECT_EQ(r.status, B::kStatusComplete | B::kCodePermanentFailure);
  EXPECT_TRUE(r.saw_training);
  EXPECT_EQ(b->link_state(), LinkState::kUntrained);
}

TEST(Npu2Bridge, AbortEndsAnInProgressProcedure) {
  auto b = make_bridge();
  b->config_write(B::kProcControl, 4, B::kPhyReset);
  EXPECT_EQ(b->config_read(B::kProcStatus, 4), B::kStatusInProgress);
  b->config_write(B::kProcControl, 4, B::kAbort);
  EXPECT_EQ(b->config_read(B::kProcStatus, 4), B::kStatusComplete | B::kCodeAborted);
}

TEST(Npu2Bridge, FlrThroughDeviceControlUntrains) {
  auto b = make_bridge();
  train(*b);
  ASSERT_EQ(b->link_state(), LinkState::kTrained);
  b->config_write(B::kPcieCap + 8, 4, 0x8000 | 0x2810);  // skiboot refuses a 4-byte write there
  EXPECT_EQ(b->link_state(), LinkState::kTrained);
  b->config_write(B::kPcieCap + 8, 2, 0x8000 | 0x2810);
  EXPECT_EQ(b->link_state(), LinkState::kUntrained);
  EXPECT_EQ(b->config_read(B::kPcieCap + 8, 2), 0x2810u);  // initiate-FLR reads 0
  EXPECT_EQ(b->config_read(B::kLinkFlags, 1) & B::kLinkFlagDlReset, 0u);
}

TEST(Npu2Bridge, BridgeResetAndGpuResetUntrain) {
  auto b = make_bridge();
  train(*b);
  b->reset(PciDeviceModel::ResetKind::kHot);
  EXPECT_EQ(b->link_state(), LinkState::kUntrained);
  // TX_ZCAL runs once per PHY, so retraining needs only PHY reset, DC calibration and RX training.
  for (uint32_t p : {B::kPhyReset, B::kPhyRxDccal, B::kPhyRxTraining})
    ASSERT_EQ(run_procedure(*b, p).status, B::kStatusComplete);
  EXPECT_EQ(b->link_state(), LinkState::kTrained);
  b->gpu_reset();
  EXPECT_EQ(b->link_state(), LinkState::kUntrained);
  train(*b);
  b->reset(PciDeviceModel::ResetKind::kFunctionLevel);
  EXPECT_EQ(b->link_state(), LinkState::kUntrained);
  // A PHY reset on a trained link takes it down until RX training completes again.
  train(*b);
  b->config_write(B::kProcControl, 4, B::kPhyReset);
  EXPECT_EQ(b->link_state(), LinkState::kTraining);
}

TEST(LinkState, Names) {
  EXPECT_EQ(to_string(LinkState::kUntrained), "untrained");
  EXPECT_EQ(to_string(LinkState::kTraining), "training");
  EXPECT_EQ(to_string(LinkState::kTrained), "trained");
}

}  // namespace
}  // namespace nv2pt::platform
