#include "platform/hardware.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <set>

#include "platform/gv100.h"
#include "platform/npu2_bridge.h"

namespace nv2pt::platform {
namespace {

PciAddress addr(std::string_view text) { return PciAddress::parse(text).value(); }

void train_bridge(PciDeviceModel& b) {
  for (uint32_t p : {Npu2Bridge::kPhyReset, Npu2Bridge::kPhyTxZcal, Npu2Bridge::kPhyRxDccal,
                     Npu2Bridge::kPhyRxTraining}) {
    b.config_write(Npu2Bridge::kProcControl, 4, p);
    for (int i = 0; i < 10 && !(b.config_read(Npu2Bridge::kProcStatus, 4) & Npu2Bridge::kStatusComplete); ++i) {
    }
  }
}

class DefaultHardware : public ::testing::Test {
 protected:
  Machine machine = Machine::load_default();
  std::unique_ptr<Hardware> hw = Hardware::create(machine, {.hmi_policy = HmiPolicy::kLog}).value();
};

TEST_F(DefaultHardware, ModelsEveryFunctionGpuRamAndAtsdBlock) {
  size_t models = 0;
  for (const PciFunction& f : machine.pci_functions())
    if (hw->device(f.address) != nullptr) ++models;
  EXPECT_EQ(models, 18u);
  EXPECT_EQ(hw->device(addr("0004:07:00.0")), nullptr);
  EXPECT_NE(dynamic_cast<Gv100*>(hw->device(addr("0035:05:00.0"))), nullptr);
  EXPECT_NE(dynamic_cast<Npu2Bridge*>(hw->device(addr("0007:00:02.1"))), nullptr);

  size_t rams = 0;
  for (const Gpu& gpu : machine.gpus()) {
    GpuRam* ram = hw->gpu_ram(gpu.address);
    ASSERT_NE(ram, nullptr) << gpu.address.to_string();
    EXPECT_EQ(ram->config().window_size, uint64_t{128} << 30);
    EXPECT_EQ(ram->config().real_size, uint64_t{16} << 30);
    ++rams;
  }
  EXPECT_EQ(rams, 6u);
  EXPECT_EQ(hw->gpu_ram(addr("0035:03:00.0"))->config().window_base, 0x2400'0000'0000u);

  std::set<int> fds;
  size_t entries = 0;
  for (const Phb& phb : machine.phbs()) {
    for (uint64_t hpa : phb.atsd) {
      ++entries;
      auto fd = hw->atsd_fd(hpa);
      ASSERT_TRUE(fd.has_value());
      fds.insert(*fd);
    }
  }
  EXPECT_EQ(entries, 16u);
  EXPECT_EQ(fds.size(), 16u);
  EXPECT_FALSE(hw->atsd_fd(0x1234).has_value());
}

TEST_F(DefaultHardware, BridgesKnowTheirLinkAndGpu) {
  auto* b = dynamic_cast<Npu2Bridge*>(hw->device(addr("0007:00:01.1")));
  ASSERT_NE(b, nullptr);
  const NvlinkBridge* nb = machine.find_bridge(addr("0007:00:01.1"));
  const uint32_t index = *machine.link_of(*nb)->index;
  EXPECT_EQ(b->config_read(Npu2Bridge::kLinkIndex, 1), index);
  EXPECT_EQ(b->config_read(Npu2Bridge::kLinkFlags, 1) & Npu2Bridge::kLinkFlagPciLinked, 1u);
  EXPECT_EQ((b->ntl_base() >> 42) & 0xf, 8u);  // second chip
}

TEST_F(DefaultHardware, TrainingEveryLinkOfAGpuOpensItsRamAndAGpuResetClosesIt) {
  const PciAddress gpu = addr("0004:04:00.0");
  const Gpu* g = machine.find_gpu(gpu);
  ASSERT_NE(g, nullptr);
  ASSERT_EQ(g->bridges.size(), 2u);
  EXPECT_FALSE(hw->gpu_links_trained(gpu));
  const PciAddress b0 = machine.bridges()[g->bridges[0]].address;
  const PciAddress b1 = machine.bridges()[g->bridges[1]].address;
  EXPECT_EQ(hw->link_state(b0), LinkState::kUntrained);
  EXPECT_FALSE(hw->link_state(gpu).has_value());

  train_bridge(*hw->device(b0));
  EXPECT_EQ(hw->link_state(b0), LinkState::kTrained);
  EXPECT_FALSE(hw->gpu_links_trained(gpu));  // every link, not one
  train_bridge(*hw->device(b1));
  EXPECT_TRUE(hw->gpu_links_trained(gpu));
  EXPECT_FALSE(hw->gpu_links_trained(addr("0004:05:00.0")));

  GpuRam* ram = hw->gpu_ram(gpu);
  auto m = ram->map(nullptr, 0, 1 << 20, PROT_READ | PROT_WRITE);
  ASSERT_TRUE(m.has_value());
  auto* p = static_cast<volatile uint8_t*>(*m);
  p[0x100] = 42;
  EXPECT_EQ(hw->hmi_log().count(), 0u);
  EXPECT_EQ(ram->populated_pages(), 1u);

  hw->device(gpu)->reset(PciDeviceModel::ResetKind::kHot);
  EXPECT_EQ(hw->link_state(b0), LinkState::kUntrained);
  EXPECT_EQ(hw->link_state(b1), LinkState::kUntrained);
  EXPECT_FALSE(hw->gpu_links_trained(gpu));
  ram->discard();
  EXPECT_EQ(p[0x100], 0);  // log policy: recorded, then zeros
  ASSERT_EQ(hw->hmi_log().count(), 1u);
  EXPECT_EQ(hw->hmi_log().entries()[0].hpa, 0x0400'0000'0100u);
  EXPECT_EQ(hw->hmi_log().entries()[0].cause, HmiCause::kUntrainedLink);
  ram->unmap(*m, 1 << 20);
  munmap(*m, 1 << 20);
}

// The bridges tell the GPU's RAM when its links change: trained through the procedure interface, the real RAM is
// the kernel's to fault in; a retraining procedure on one link (no GPU reset) sends new touches back to the rule.
TEST_F(DefaultHardware, LinkTrainingHandsGpuRamToTheKernelAndALinkDropTakesItBack) {
  const PciAddress gpu = addr("0004:04:00.0");
  const Gpu* g = machine.find_gpu(gpu);
  ASSERT_NE(g, nullptr);
  GpuRam* ram = hw->gpu_ram(gpu);
  auto m = ram->map(nullptr, 0, 1 << 20, PROT_READ | PROT_WRITE);
  ASSERT_TRUE(m.has_value());
  auto* p = static_cast<volatile uint8_t*>(*m);
  PciDeviceModel& b0 = *hw->device(machine.bridges()[g->bridges[0]].address);
  PciDeviceModel& b1 = *hw->device(machine.bridges()[g->bridges[1]].address);
  train_bridge(b0);
  EXPECT_FALSE(ram->served_by_kernel());
  train_bridge(b1);
  EXPECT_TRUE(ram->served_by_kernel());
  p[0x10000] = 1;
  EXPECT_EQ(ram->serviced_faults(), 0u);

  b1.config_write(Npu2Bridge::kProcControl, 4, Npu2Bridge::kPhyReset);  // retraining: the link is down
  EXPECT_FALSE(ram->served_by_kernel());
  EXPECT_EQ(p[0x10000], 1);  // mapped before the drop: stays mapped
  p[0x20000] = 2;
  ASSERT_EQ(hw->hmi_log().count(), 1u);
  EXPECT_EQ(hw->hmi_log().entries()[0].hpa, 0x0400'0002'0000u);
  EXPECT_EQ(hw->hmi_log().entries()[0].cause, HmiCause::kUntrainedLink);
  EXPECT_EQ(ram->serviced_faults(), 1u);
  ram->unmap(*m, 1 << 20);
  munmap(*m, 1 << 20);
}

TEST_F(DefaultHardware, AtsdLaunchCompletesAtOnce) {
  const uint64_t hpa = machine.phbs()[0].kind == PhbKind::kNpu ? machine.phbs()[0].atsd.at(0) : 0;
  uint64_t atsd = hpa;
  for (const Phb& phb : machine.phbs())
    if (phb.kind == PhbKind::kNpu && !phb.atsd.empty()) atsd = phb.atsd[0];
  const uint64_t status_busy = 1, ava = 0x1234000, launch = 0x8000000000000000ull;
  ASSERT_TRUE(hw->atsd_write(atsd, 0x10, std::as_bytes(std::span(&status_busy, 1))));
  ASSERT_TRUE(hw->atsd_write(atsd, 0x8, std::as_bytes(std::span(&ava, 1))));
  ASSERT_TRUE(hw->atsd_write(atsd, 0x0, std::as_bytes(std::span(&launch, 1))));
  uint64_t status = 99, back = 0;
  ASSERT_TRUE(hw->atsd_read(atsd, 0x10, std::as_writable_bytes(std::span(&status, 1))));
  EXPECT_EQ(status, 0u);
  ASSERT_TRUE(hw->atsd_read(atsd, 0x8, std::as_writable_bytes(std::span(&back, 1))));
  EXPECT_EQ(back, ava);
  EXPECT_EQ(hw->atsd_read(atsd, 0x10000 - 4, std::as_writable_bytes(std::span(&back, 1))).error(), kEINVAL);
  EXPECT_EQ(hw->atsd_read(0x42, 0, std::as_writable_bytes(std::span(&back, 1))).error(), kEINVAL);
}

// Every group attach and detach records two OPAL calls for as long as the host lives: only the latest are kept.
TEST_F(DefaultHardware, OpalNpuCallsKeepTheLatest) {
  const PciAddress gpu = machine.gpus().front().address;
  for (uint64_t lpid = 1; lpid <= Hardware::kOpalCallsKept; ++lpid) {
    ASSERT_TRUE(hw->npu_map_lpar(gpu, lpid, 0));
    ASSERT_TRUE(hw->npu_unmap_lpar(gpu));
  }
  ASSERT_TRUE(hw->npu_map_lpar(gpu, 7777, 0));
  const auto calls = hw->opal_npu_calls();
  ASSERT_EQ(calls.size(), Hardware::kOpalCallsKept);
  EXPECT_EQ(calls[calls.size() - 2].kind, Hardware::OpalNpuCall::kMapLpar);
  EXPECT_EQ(calls[calls.size() - 2].lpid, 7777u) << "the newest is last";
  EXPECT_EQ(calls.back().kind, Hardware::OpalNpuCall::kInitContext);
  EXPECT_EQ(hw->npu_lpid(gpu), 7777u);
}

TEST_F(DefaultHardware, PolicyReachesEveryGpuRam) {
  hw->set_hmi_policy(HmiPolicy::kFatal);
  for (const Gpu& gpu : machine.gpus()) EXPECT_EQ(hw->gpu_ram(gpu.address)->config().policy, HmiPolicy::kFatal);
  EXPECT_EQ(&hw->machine(), &machine);
}

}  // namespace
}  // namespace nv2pt::platform
