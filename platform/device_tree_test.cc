#include "platform/device_tree.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>

namespace nv2pt::platform {
namespace {

using ::testing::HasSubstr;

const std::string kTopologies = NV2PT_TEST_TOPOLOGIES;

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class DefaultTree : public ::testing::Test {
 protected:
  DeviceTree tree = DeviceTree::embedded_default();
  int node(std::string_view path) {
    auto n = tree.find_node(path);
    EXPECT_TRUE(n) << path;
    return n.value_or(-1);
  }
};

TEST_F(DefaultTree, EmbeddedBlobIsTheBuildsDtb) {
  EXPECT_EQ(std::vector<uint8_t>(tree.blob().begin(), tree.blob().end()), read_bytes(NV2PT_DEFAULT_DTB));
  EXPECT_EQ(tree.origin(), "embedded default topology");
}

TEST_F(DefaultTree, FindsNodesAndPrintsPaths) {
  int bridge = node("/pciex@6030200000000/pci@0,1");
  EXPECT_EQ(tree.path(bridge), "/pciex@6030200000000/pci@0,1");
  EXPECT_EQ(tree.name(bridge), "pci@0,1");
  EXPECT_EQ(tree.path(*tree.parent(bridge)), "/pciex@6030200000000");
  EXPECT_EQ(tree.parent(DeviceTree::kRoot), std::nullopt);
  EXPECT_EQ(tree.find_node("/no/such/node"), std::nullopt);
  EXPECT_EQ(tree.children(node("/xscom@603fc00000000/npu@5011000")).size(), 6u);
  EXPECT_TRUE(tree.is_compatible(node("/pciex@6030200000000"), "ibm,power9-npu-pciex"));
  EXPECT_FALSE(tree.is_compatible(node("/pciex@6030200000000"), "ibm,power9-pciex"));
}

TEST_F(DefaultTree, ResolvesPhandles) {
  int bridge = node("/pciex@6230200000000/pci@2");
  auto gpu = tree.resolve_phandle(*tree.read_u32(bridge, "ibm,gpu"));
  ASSERT_TRUE(gpu);
  EXPECT_EQ(tree.path(*gpu), "/pciex@620c3c0500000/3d@5");
  auto mem = tree.resolve_phandle(*tree.read_u32(bridge, "memory-region"));
  ASSERT_TRUE(mem);
  EXPECT_EQ(tree.path(*mem), "/memory@244000000000");
  EXPECT_EQ(tree.resolve_phandle(0x99), std::nullopt);
  EXPECT_EQ(tree.resolve_phandle(0), std::nullopt);
  EXPECT_EQ(tree.resolve_phandle(0xffffffff), std::nullopt);
}

TEST_F(DefaultTree, TypedReaders) {
  int mem = node("/memory@244000000000");
  EXPECT_EQ(tree.read_u64_index(mem, "reg", 0), 0x2440'0000'0000u);
  EXPECT_EQ(tree.read_u64_index(mem, "reg", 1), 128ull << 30);
  EXPECT_EQ(tree.read_u64_array(mem, "reg"), (std::vector<uint64_t>{0x2440'0000'0000u, 128ull << 30}));
  EXPECT_EQ(tree.read_u32_array(mem, "ibm,associativity"), (std::vector<uint32_t>{4, 250, 250, 250, 250}));
  EXPECT_EQ(tree.read_u32(mem, "ibm,chip-id"), 250u);
  EXPECT_EQ(tree.read_string(mem, "compatible"), "ibm,coherent-device-memory");
  EXPECT_EQ(tree.property(mem, "reg")->size(), 16u);
  EXPECT_TRUE(tree.has_property(mem, "linux,usable-memory"));

  int phb = node("/pciex@6230200000000");
  EXPECT_EQ(tree.read_u64_index(phb, "ibm,mmio-atsd", 7), 0x0006'2302'0087'0000u);
  EXPECT_EQ(tree.read_u64(phb, "ibm,opal-phbid"), 7u);
  EXPECT_EQ(tree.read_u32_index(phb, "ibm,supported-tce-sizes", 3), 28u);
}

TEST_F(DefaultTree, ReadersUseTheKernelsErrors) {
  int mem = node("/memory@40000000000");
  EXPECT_EQ(tree.read_u32(mem, "no-such-property").error(), Errno{EINVAL});
  EXPECT_EQ(tree.read_u64_index(mem, "reg", 2).error(), Errno{EOVERFLOW});
  EXPECT_EQ(tree.read_u64(mem, "ibm,chip-id").error(), Errno{EOVERFLOW});  // one cell is not a u64
  EXPECT_EQ(tree.read_u64_array(mem, "ibm,associativity").error(), Errno{EINVAL});  // 20 bytes
  EXPECT_EQ(tree.read_u32_index(mem, "ibm,associativity", 5).error(), Errno{EOVERFLOW});
  EXPECT_EQ(tree.read_u32_index(mem, "ibm,associativity", SIZE_MAX).error(), Errno{EOVERFLOW});
  EXPECT_EQ(tree.property(mem, "no-such-property"), std::nullopt);
}

TEST(DeviceTreeLoad, CompilesDtsAndReadsDtb) {
  auto from_dts = DeviceTree::load(NV2PT_DEFAULT_DTS);
  ASSERT_TRUE(from_dts) << from_dts.error().message;
  auto from_dtb = DeviceTree::load(NV2PT_DEFAULT_DTB);
  ASSERT_TRUE(from_dtb) << from_dtb.error().message;
  EXPECT_TRUE(std::ranges::equal(from_dts->blob(), from_dtb->blob()));
  EXPECT_EQ(from_dtb->origin(), NV2PT_DEFAULT_DTB);
}

TEST(DeviceTreeLoad, DtsIncludesResolveBesideTheFile) {
  auto tree = DeviceTree::load(kTopologies + "/kernel-no-tgt.dts");
  ASSERT_TRUE(tree) << tree.error().message;
  auto bridge = tree->find_node("/pciex@6030200000000/pci@0");
  ASSERT_TRUE(bridge);
  EXPECT_FALSE(tree->has_property(*bridge, "ibm,device-tgt-addr"));
}

TEST(DeviceTreeLoad, DtcComplaintNamesTheFile) {
  std::string file = kTopologies + "/not-a-tree.dts";
  auto tree = DeviceTree::load(file);
  ASSERT_FALSE(tree);
  EXPECT_THAT(tree.error().message, HasSubstr(file + ": dtc failed:"));
  EXPECT_THAT(tree.error().message, HasSubstr("syntax error"));
}

TEST(DeviceTreeLoad, RejectsMissingFilesAndUnknownTypes) {
  auto missing = DeviceTree::load("/nonexistent/machine.dts");
  ASSERT_FALSE(missing);
  EXPECT_THAT(missing.error().message, HasSubstr("/nonexistent/machine.dts: cannot open"));
  auto missing_dtb = DeviceTree::load("/nonexistent/machine.dtb");
  ASSERT_FALSE(missing_dtb);
  EXPECT_THAT(missing_dtb.error().message, HasSubstr("/nonexistent/machine.dtb: cannot open"));
  auto other = DeviceTree::load(kTopologies + "/README.md");
  ASSERT_FALSE(other);
  EXPECT_THAT(other.error().message, HasSubstr("README.md: unknown topology file type '.md'"));
}

TEST(DeviceTreeLoad, RejectsAGarbageDtb) {
  char name[] = "/tmp/nv2pt-garbage-XXXXXX.dtb";
  int fd = mkstemps(name, 4);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "this is not a flattened device tree, just text", 46), 46);
  close(fd);
  auto tree = DeviceTree::load(name);
  unlink(name);
  ASSERT_FALSE(tree);
  EXPECT_THAT(tree.error().message, HasSubstr(std::string(name) + ": not a valid device-tree blob"));
}

TEST(DeviceTreeLoad, TruncatedBlobIsRejected) {
  auto bytes = read_bytes(NV2PT_DEFAULT_DTB);
  bytes.resize(bytes.size() / 2);
  auto tree = DeviceTree::from_blob(bytes, "half.dtb");
  ASSERT_FALSE(tree);
  EXPECT_THAT(tree.error().message, HasSubstr("half.dtb: not a valid device-tree blob"));
  EXPECT_FALSE(DeviceTree::from_blob({}, "empty.dtb"));
}

TEST(DeviceTreeLoad, MissingDtcIsReported) {
  setenv("NV2PT_DTC", "/nonexistent/dtc", 1);
  auto tree = DeviceTree::load(NV2PT_DEFAULT_DTS);
  unsetenv("NV2PT_DTC");
  ASSERT_FALSE(tree);
  EXPECT_THAT(tree.error().message, HasSubstr("cannot run the device-tree compiler '/nonexistent/dtc'"));
}

}  // namespace
}  // namespace nv2pt::platform
