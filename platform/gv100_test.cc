#include "platform/gv100.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>

#include "platform/config_space.h"
#include "platform/pci_test_util.h"

namespace nv2pt::platform {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

PciAddress gpu_address() { return PciAddress::parse("0004:04:00.0").value(); }

std::unique_ptr<Gv100> make_gpu() { return Gv100::create(gpu_address()).value(); }

TEST(Gv100, PresentsTheV100Identity) {
  auto gpu = make_gpu();
  EXPECT_EQ(gpu->config_read(0x00, 4), 0x1db110deu);
  EXPECT_EQ(gpu->config_read(0x08, 4), 0x030200a1u);  // rev a1, class 0x030200 "3D controller"
  EXPECT_EQ(gpu->config_read(0x0e, 1), 0x00u);        // single-function type-0 header
  EXPECT_EQ(gpu->config_read(0x2c, 4), 0x121210deu);  // subsystem 10de:1212
  EXPECT_EQ(gpu->config_read(0x3d, 1), 0x01u);        // INTA
  EXPECT_EQ(gpu->config_read(0x06, 2) & 0x10, 0x10u);  // capability list present
  EXPECT_EQ(gpu->config_size(), 4096u);
  EXPECT_FALSE(gpu->has_flr());
  EXPECT_EQ(gpu->rom_size(), 0u);
}

TEST(Gv100, BarRegistersSizeTheWayHardwareDoes) {
  auto gpu = make_gpu();
  gpu->config_write(0x10, 4, 0xffffffff);
  EXPECT_EQ(gpu->config_read(0x10, 4), 0xff000000u);  // 16 MiB, 32-bit, non-prefetchable
  gpu->config_write(0x14, 4, 0xffffffff);
  gpu->config_write(0x18, 4, 0xffffffff);
  EXPECT_EQ(gpu->config_read(0x14, 4), 0x0000000cu);  // 64-bit prefetchable, low half of the 16 GiB mask
  EXPECT_EQ(gpu->config_read(0x18, 4), 0xfffffffcu);
  gpu->config_write(0x1c, 4, 0xffffffff);
  gpu->config_write(0x20, 4, 0xffffffff);
  EXPECT_EQ(gpu->config_read(0x1c, 4), 0xfe00000cu);  // 32 MiB
  EXPECT_EQ(gpu->config_read(0x20, 4), 0xffffffffu);
  gpu->config_write(0x24, 4, 0xffffffff);
  EXPECT_EQ(gpu->config_read(0x24, 4), 0u);
  gpu->config_write(0x30, 4, 0xfffff800);
  EXPECT_EQ(gpu->config_read(0x30, 4), 0u);  // no ROM

  EXPECT_EQ(testing::probe_bar_size(*gpu, 0), Gv100::kBar0Size);
  EXPECT_EQ(testing::probe_bar_size(*gpu, 1), Gv100::kBar1Size);
  EXPECT_EQ(testing::probe_bar_size(*gpu, 3), Gv100::kBar3Size);

  gpu->config_write(0x10, 4, 0x12345678);
  EXPECT_EQ(gpu->config_read(0x10, 4), 0x12000000u);  // address bits below the size are read-only
  gpu->config_write(0x10, 2, 0xffff);                  // sub-dword writes merge
  EXPECT_EQ(gpu->config_read(0x10, 4), 0x12000000u);

  EXPECT_EQ(gpu->bar(0).size, Gv100::kBar0Size);
  EXPECT_FALSE(gpu->bar(0).mem64);
  EXPECT_TRUE(gpu->bar(1).mem64);
  EXPECT_TRUE(gpu->bar(1).prefetchable);
  EXPECT_EQ(gpu->bar(2).size, 0u);
  EXPECT_EQ(gpu->bar(3).size, Gv100::kBar3Size);
  EXPECT_GE(gpu->bar_fd(0), 0);
  EXPECT_GE(gpu->bar_fd(1), 0);
  EXPECT_EQ(gpu->bar_fd(2), -1);
  EXPECT_GE(gpu->bar_fd(3), 0);
}

TEST(Gv100, CapabilityChainWalks) {
  auto gpu = make_gpu();
  EXPECT_THAT(testing::capability_chain(*gpu),
              ElementsAre(Pair(0x60u, 0x01), Pair(0x68u, 0x05), Pair(0x78u, 0x10), Pair(0xb4u, 0x09)));
  EXPECT_THAT(testing::extended_capability_chain(*gpu),
              ElementsAre(Pair(0x100u, 0x0002), Pair(0x128u, 0x0004), Pair(0x420u, 0x0001), Pair(0x600u, 0x000b)));
  // PCIe v2 endpoint; device capabilities without FLR; device control writable except bit 15.
  EXPECT_EQ(gpu->config_read(Gv100::kExpCap + 2, 2), 0x0002u);
  EXPECT_EQ(gpu->config_read(Gv100::kExpCap + 4, 4) & (1u << 28), 0u);
  gpu->config_write(Gv100::kExpCap + 8, 2, 0xffff);
  EXPECT_EQ(gpu->config_read(Gv100::kExpCap + 8, 2), 0x7fffu);
  // Device status error bits are RW1C.
  EXPECT_EQ(gpu->config_read(Gv100::kExpCap + 10, 2), 0u);
}

TEST(Gv100, Bar0IsARegisterFileWithBoot0) {
  auto gpu = make_gpu();
  uint32_t boot0 = 0;
  ASSERT_TRUE(gpu->bar_read(0, Gv100::kNvPmcBoot0, std::as_writable_bytes(std::span(&boot0, 1))));
  EXPECT_EQ(boot0, 0x140000a1u);
  const uint32_t junk = 0xdeadbeef;
  ASSERT_TRUE(gpu->bar_write(0, 0, std::as_bytes(std::span(&junk, 1))));
  ASSERT_TRUE(gpu->bar_read(0, 0, std::as_writable_bytes(std::span(&boot0, 1))));
  EXPECT_EQ(boot0, 0x140000a1u);  // read-only
  ASSERT_TRUE(gpu->bar_write(0, 0x1000, std::as_bytes(std::span(&junk, 1))));
  uint32_t back = 0;
  ASSERT_TRUE(gpu->bar_read(0, 0x1000, std::as_writable_bytes(std::span(&back, 1))));
  EXPECT_EQ(back, junk);
  EXPECT_EQ(gpu->bar_read(0, Gv100::kBar0Size - 2, std::as_writable_bytes(std::span(&back, 1))).error(), kEINVAL);
  EXPECT_EQ(gpu->bar_read(2, 0, std::as_writable_bytes(std::span(&back, 1))).error(), kEINVAL);
  // BAR1 is the 16 GiB aperture: sparse, so its far end works without costing memory.
  ASSERT_TRUE(gpu->bar_write(1, Gv100::kBar1Size - 4, std::as_bytes(std::span(&junk, 1))));
  ASSERT_TRUE(gpu->bar_read(1, Gv100::kBar1Size - 4, std::as_writable_bytes(std::span(&back, 1))));
  EXPECT_EQ(back, junk);
}

TEST(Gv100, ResetClearsCommandAndBarsAndTellsTheListener) {
  auto gpu = make_gpu();
  int told = 0;
  gpu->set_reset_listener([&] { ++told; });
  gpu->config_write(0x04, 2, 0x0006);
  gpu->config_write(0x10, 4, 0x80000000);
  gpu->config_write(Gv100::kMsiCap + 2, 2, 0x0001);
  EXPECT_EQ(gpu->config_read(0x04, 2), 0x0006u);
  gpu->reset(PciDeviceModel::ResetKind::kHot);
  EXPECT_EQ(gpu->config_read(0x04, 2), 0u);
  EXPECT_EQ(gpu->config_read(0x10, 4), 0u);
  EXPECT_EQ(gpu->config_read(Gv100::kMsiCap + 2, 2) & 1, 0u);
  EXPECT_EQ(told, 1);
  EXPECT_EQ(gpu->reset_count(), 1u);
  gpu->reset(PciDeviceModel::ResetKind::kFunctionLevel);
  EXPECT_EQ(told, 2);
}

TEST(ConfigSpace, MasksAndRw1c) {
  ConfigSpace c;
  c.init(0x40, 4, 0x12340000, 0x0000ffff, 0xff000000);
  c.write(0x40, 4, 0x8000abcd);
  EXPECT_EQ(c.read(0x40, 4), 0x1234abcdu);  // bit 31 RW1C but clear already; upper RO
  c.set(0x40, 4, 0xff00abcd);
  c.write(0x43, 1, 0x0f);
  EXPECT_EQ(c.read(0x40, 4), 0xf000abcdu);
  EXPECT_EQ(c.read(4095, 1), 0u);
  EXPECT_EQ(c.read(4096, 1), 0xffffffffu);
}

}  // namespace
}  // namespace nv2pt::platform
