#include "interpose/compat_switch.h"

#include <gtest/gtest.h>

namespace nv2pt::interpose {
namespace {

TEST(CompatSwitchTest, OnKeepsExactlyTheNotedBuffers) {
  CompatSwitch s(SwitchSetting::kOn);
  int a = 0, b = 0;
  EXPECT_FALSE(s.keep(&a));
  s.note_nvlink2_region_info(&a);
  EXPECT_TRUE(s.keep(&a));
  EXPECT_FALSE(s.keep(&b));
  EXPECT_FALSE(s.keep(nullptr));
  EXPECT_EQ(s.kept_buffers(), 1u);
  EXPECT_EQ(s.skipped_frees(), 1u);
  s.note_nvlink2_region_info(&a);  // the same buffer again: still one
  EXPECT_EQ(s.kept_buffers(), 1u);
}

TEST(CompatSwitchTest, OffKeepsNothing) {
  CompatSwitch s(SwitchSetting::kOff);
  int a = 0;
  s.note_nvlink2_region_info(&a);
  EXPECT_FALSE(s.keep(&a));
  EXPECT_EQ(s.active(), false);
}

TEST(CompatSwitchTest, AutoIsOffForATestBinary) {
  CompatSwitch s(SwitchSetting::kAuto);
  EXPECT_EQ(s.active(), std::nullopt);  // undecided until a buffer needs it
  int a = 0;
  s.note_nvlink2_region_info(&a);
  EXPECT_EQ(s.active(), false);
  EXPECT_FALSE(s.keep(&a));
}

TEST(CompatSwitchTest, VersionMatch) {
  EXPECT_TRUE(is_qemu_72({"qemu-system-ppc64", "7.2.22"}));
  EXPECT_TRUE(is_qemu_72({"qemu-system-ppc64", "7.2.0"}));
  EXPECT_FALSE(is_qemu_72({"qemu-system-ppc64", "7.20.1"}));
  EXPECT_FALSE(is_qemu_72({"qemu-system-ppc64", "8.2.0"}));
  EXPECT_FALSE(is_qemu_72({"interpose_test", ""}));
}

}  // namespace
}  // namespace nv2pt::interpose
