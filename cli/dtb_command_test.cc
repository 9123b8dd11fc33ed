#include "cli/dtb_command.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace nv2pt::cli {
namespace {

using ::testing::HasSubstr;

TEST(DtbCommandTest, ShowsTheGuestNvlinkNodes) {
  auto tree = platform::DeviceTree::load(std::string(NV2PT_CLI_TESTDATA) + "/guest-1gpu.dts");
  ASSERT_TRUE(tree) << tree.error().message;
  const std::string text = format_guest_nvlink(*tree);
  EXPECT_THAT(text, HasSubstr("/memory@400000000000\n    address 0x400000000000, size 128 GiB (0x2000000000)"));
  EXPECT_THAT(text, HasSubstr("usable at boot: 0 bytes"));
  EXPECT_THAT(text, HasSubstr("NUMA node 1 (ibm,associativity <4 1 1 1 1>)"));
  EXPECT_THAT(text, HasSubstr("link@0: ibm,npu-link-index 0, phandle 0x130000"));
  EXPECT_THAT(text, HasSubstr("/pci@800000020000000: 0x800000000000, 0x800000010000"));
  EXPECT_THAT(text, HasSubstr("3d-controller@1 [10de:1db1, loc-code \"GPU0\"]"));
  EXPECT_THAT(text, HasSubstr("ibm,npu: /pci@800000020000000/unknown-bridge@2 (0x12000010), "
                              "/pci@800000020000000/unknown-bridge@3 (0x12000018)"));
  EXPECT_THAT(text, HasSubstr("ibm,nvlink: /npuphb0/link@1 (0x130001)"));
  EXPECT_THAT(text, HasSubstr("memory-region: /memory@400000000000 (0x110000ff)"));
  EXPECT_THAT(text, HasSubstr("ibm,device-tgt-addr: 0x40000000000"));
  EXPECT_THAT(text, HasSubstr("ibm,nvlink-speed: 0x9"));
  EXPECT_THAT(text, HasSubstr("max-associativity-domains <4 1 1 1 2>"));
}

}  // namespace
}  // namespace nv2pt::cli
