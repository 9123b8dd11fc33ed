#include "platform/machine.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "platform/nvlink.h"

namespace nv2pt::platform {
namespace {

using ::testing::ElementsAre;
using ::testing::StartsWith;

const std::string kTopologies = NV2PT_TEST_TOPOLOGIES;
constexpr uint64_t kGiB = 1ull << 30;

PciAddress addr(std::string_view text) { return PciAddress::parse(text).value(); }

TopologyResult<Machine> load_fixture(std::string_view name, LoadOptions options = {}) {
  auto tree = DeviceTree::load(kTopologies + "/" + std::string(name));
  if (!tree) return std::unexpected(tree.error());
  return Machine::load(std::move(*tree), options);
}

TEST(CompressedTgt, FollowsSkibootCoralMode) {
  EXPECT_EQ(compressed_tgt(0x0400'0000'0000), 0x0400'0000'0000u);
  EXPECT_EQ(compressed_tgt(0x0440'0000'0000), 0x0440'0000'0000u);
  EXPECT_EQ(compressed_tgt(0x2400'0000'0000), 0x0c00'0000'0000u);
  EXPECT_EQ(compressed_tgt(0x2440'0000'0000), 0x0c40'0000'0000u);
  EXPECT_EQ(compressed_tgt(uint64_t{3} << 49), uint64_t{3} << 45);
  EXPECT_EQ(nvlink_speed_name(0x9), "25.0 Gbps");
  EXPECT_EQ(nvlink_speed_name(0x8), "25.78125 Gbps");
  EXPECT_EQ(nvlink_speed_name(0x3), "20 Gbps");
  EXPECT_EQ(nvlink_speed_name(0x4), std::nullopt);
}

class DefaultMachine : public ::testing::Test {
 protected:
  Machine m = Machine::load_default();
};

TEST_F(DefaultMachine, HasTheSeedsEighteenFunctionsInAddressOrder) {
  std::vector<std::string> listed;
  std::vector<uint32_t> groups;
  for (const auto& f : m.pci_functions()) {
    listed.push_back(f.address.to_string());
    groups.push_back(f.iommu_group.value());
  }
  EXPECT_THAT(listed, ElementsAre("0004:04:00.0", "0004:05:00.0", "0004:06:00.0", "0006:00:00.0", "0006:00:00.1",
                                  "0006:00:01.0", "0006:00:01.1", "0006:00:02.0", "0006:00:02.1", "0007:00:00.0",
                                  "0007:00:00.1", "0007:00:01.0", "0007:00:01.1", "0007:00:02.0", "0007:00:02.1",
                                  "0035:03:00.0", "0035:04:00.0", "0035:05:00.0"));
  EXPECT_THAT(groups, ElementsAre(4, 5, 6, 4, 4, 5, 5, 6, 6, 10, 10, 11, 11, 12, 12, 10, 11, 12));
  EXPECT_THAT(m.iommu_groups(), ElementsAre(4, 5, 6, 10, 11, 12));
  std::vector<std::string> group11;
  for (const auto* f : m.functions_in_group(11)) group11.push_back(f->address.to_string());
  EXPECT_THAT(group11, ElementsAre("0007:00:01.0", "0007:00:01.1", "0035:04:00.0"));
}

TEST_F(DefaultMachine, IdentifiesGpusAndBridges) {
  ASSERT_EQ(m.gpus().size(), 6u);
  ASSERT_EQ(m.bridges().size(), 12u);
  for (const auto& gpu : m.gpus()) {
    const auto& f = m.function_of(gpu);
    EXPECT_EQ(f.vendor_id, 0x10de);
    EXPECT_EQ(f.device_id, 0x1db1);
    EXPECT_EQ(f.revision, 0xa1);
    EXPECT_EQ(f.class_code, 0x030200u);
    EXPECT_EQ(f.kind, PciFunctionKind::kGpu);
    EXPECT_EQ(m.phb_of(f).kind, PhbKind::kPcie);
    EXPECT_THAT(m.phb_of(f).tce_page_shifts, ElementsAre(12, 16, 21, 30));
  }
  for (const auto& bridge : m.bridges()) {
    const auto& f = m.function_of(bridge);
    EXPECT_EQ(f.vendor_id, 0x1014);
    EXPECT_EQ(f.device_id, 0x04ea);
    EXPECT_EQ(f.revision, 0x01);
    EXPECT_EQ(f.class_code, 0x068000u);
    EXPECT_EQ(m.phb_of(f).kind, PhbKind::kNpu);
    EXPECT_THAT(m.phb_of(f).tce_page_shifts, ElementsAre(12, 16, 24, 28));
    EXPECT_EQ(bridge.link_speed, 0x9u);
  }
}

TEST_F(DefaultMachine, GpuWindowsTgtsAndRealSizes) {
  struct Expected {
    const char* gpu;
    uint64_t window;
    uint64_t tgt;
    uint32_t numa;
  };
  const Expected expected[] = {
      {"0004:04:00.0", 0x0400'0000'0000, 0x0400'0000'0000, 255}, {"0004:05:00.0", 0x0420'0000'0000, 0x0420'0000'0000, 254},
      {"0004:06:00.0", 0x0440'0000'0000, 0x0440'0000'0000, 253}, {"0035:03:00.0", 0x2400'0000'0000, 0x0c00'0000'0000, 252},
      {"0035:04:00.0", 0x2420'0000'0000, 0x0c20'0000'0000, 251}, {"0035:05:00.0", 0x2440'0000'0000, 0x0c40'0000'0000, 250},
  };
  for (const auto& e : expected) {
    SCOPED_TRACE(e.gpu);
    const Gpu* gpu = m.find_gpu(addr(e.gpu));
    ASSERT_TRUE(gpu);
    const GpuMemory* mem = m.memory_of(*gpu);
    ASSERT_TRUE(mem);
    EXPECT_EQ(mem->window, (MemoryRange{e.window, 128 * kGiB}));
    EXPECT_EQ(mem->real_size, 16 * kGiB);
    EXPECT_EQ(mem->chip_id, e.numa);
    EXPECT_EQ(mem->associativity_id, e.numa);
    EXPECT_EQ(gpu->tgt, e.tgt);
    EXPECT_EQ(gpu->tgt, compressed_tgt(e.window));
    ASSERT_EQ(gpu->bridges.size(), 2u);
    for (size_t b : gpu->bridges) {
      EXPECT_EQ(m.bridges()[b].tgt, e.tgt);
      EXPECT_EQ(m.gpu_of(m.bridges()[b]), gpu);
    }
  }
}

TEST_F(DefaultMachine, BridgesUseLinks2nAnd2nPlus1AndTheirAtsd) {
  struct Expected {
    const char* bridge;
    const char* gpu;
    uint32_t link;
    uint64_t atsd;
  };
  const Expected expected[] = {
      {"0006:00:00.0", "0004:04:00.0", 0, 0x0006'0302'0080'0000}, {"0006:00:00.1", "0004:04:00.0", 1, 0x0006'0302'0081'0000},
      {"0006:00:01.0", "0004:05:00.0", 2, 0x0006'0302'0082'0000}, {"0006:00:01.1", "0004:05:00.0", 3, 0x0006'0302'0083'0000},
      {"0006:00:02.0", "0004:06:00.0", 4, 0x0006'0302'0084'0000}, {"0006:00:02.1", "0004:06:00.0", 5, 0x0006'0302'0085'0000},
      {"0007:00:00.0", "0035:03:00.0", 0, 0x0006'2302'0080'0000}, {"0007:00:00.1", "0035:03:00.0", 1, 0x0006'2302'0081'0000},
      {"0007:00:01.0", "0035:04:00.0", 2, 0x0006'2302'0082'0000}, {"0007:00:01.1", "0035:04:00.0", 3, 0x0006'2302'0083'0000},
      {"0007:00:02.0", "0035:05:00.0", 4, 0x0006'2302'0084'0000}, {"0007:00:02.1", "0035:05:00.0", 5, 0x0006'2302'0085'0000},
  };
  for (const auto& e : expected) {
    SCOPED_TRACE(e.bridge);
    const NvlinkBridge* bridge = m.find_bridge(addr(e.bridge));
    ASSERT_TRUE(bridge);
    ASSERT_TRUE(m.gpu_of(*bridge));
    EXPECT_EQ(m.gpu_of(*bridge)->address, addr(e.gpu));
    const NvlinkLink* link = m.link_of(*bridge);
    ASSERT_TRUE(link);
    EXPECT_EQ(link->index, e.link);
    EXPECT_EQ(link->group_id, e.link / 2);
    EXPECT_EQ(link->chip_id, m.phb_of(m.function_of(*bridge)).chip_id);
    EXPECT_EQ(m.atsd_address(*bridge), e.atsd);
    EXPECT_EQ(m.function_of(*bridge).loc_code, link->slot_label);
    // The GPU lists its bridges in link order: NPU #0 is the .0 function.
    EXPECT_EQ(m.bridges()[m.gpu_of(*bridge)->bridges[bridge->address.function]].address, bridge->address);
  }
}

TEST_F(DefaultMachine, ChipsPhbsAndHostRam) {
  ASSERT_EQ(m.chips().size(), 2u);
  EXPECT_EQ(m.chips()[0].id, 0u);
  EXPECT_EQ(m.chips()[1].id, 8u);
  EXPECT_THAT(m.host_memory(), ElementsAre(MemoryRange{0, 256 * kGiB}, MemoryRange{0x2000'0000'0000, 256 * kGiB}));
  std::vector<uint32_t> domains;
  for (const auto& phb : m.phbs()) domains.push_back(phb.domain);
  EXPECT_THAT(domains, ::testing::UnorderedElementsAre(0x4, 0x35, 0x6, 0x7));
  EXPECT_EQ(m.links().size(), 12u);
  EXPECT_EQ(m.gpu_memories().size(), 6u);
}

TEST_F(DefaultMachine, ObjectsKeepTheirNodes) {
  const auto& t = m.device_tree();
  EXPECT_EQ(t.path(m.find_bridge(addr("0006:00:00.1"))->node), "/pciex@6030200000000/pci@0,1");
  EXPECT_EQ(t.path(m.find_gpu(addr("0035:05:00.0"))->node), "/pciex@620c3c0500000/3d@5");
  EXPECT_EQ(t.path(m.memory_of(*m.find_gpu(addr("0035:05:00.0")))->node), "/memory@244000000000");
  EXPECT_EQ(m.find_function(addr("0006:00:03.0")), nullptr);
  EXPECT_EQ(m.find_gpu(addr("0006:00:00.0")), nullptr);     // a bridge, not a GPU
  EXPECT_EQ(m.find_bridge(addr("0004:04:00.0")), nullptr);  // a GPU, not a bridge
}

TEST_F(DefaultMachine, DriverBindingCanChange) {
  EXPECT_EQ(m.driver(addr("0004:04:00.0")), "vfio-pci");
  EXPECT_EQ(m.driver(addr("0007:00:02.1")), "vfio-pci");
  EXPECT_EQ(m.set_driver(addr("0004:04:00.0"), "nvidia"), Result<void>{});
  EXPECT_EQ(m.driver(addr("0004:04:00.0")), "nvidia");
  EXPECT_EQ(m.set_driver(addr("0004:04:00.0"), ""), Result<void>{});
  EXPECT_EQ(m.driver(addr("0004:04:00.0")), "");
  EXPECT_EQ(m.driver(addr("0004:05:00.0")), "vfio-pci");  // the others are untouched
  EXPECT_EQ(m.driver(addr("0001:00:00.0")), std::nullopt);
  EXPECT_EQ(m.set_driver(addr("0001:00:00.0"), "vfio-pci").error(), kENODEV);

  // Survives a move, and concurrent rebinding is safe.
  Machine moved = std::move(m);
  std::thread a([&] {
    for (int i = 0; i < 1000; ++i) (void)moved.set_driver(addr("0004:05:00.0"), i % 2 ? "nvidia" : "vfio-pci");
  });
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(moved.driver(addr("0004:05:00.0")).has_value());
  a.join();
  EXPECT_EQ(moved.driver(addr("0004:05:00.0")), "nvidia");  // i = 999 was last
}

TEST(MachineLoad, DtsAndDtbOfTheDefaultGiveTheSameMachine) {
  auto from_dts = DeviceTree::load(NV2PT_DEFAULT_DTS);
  ASSERT_TRUE(from_dts);
  auto m = Machine::load(std::move(*from_dts));
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->pci_functions().size(), 18u);
  EXPECT_EQ(m->gpus().size(), 6u);
}

// Each rule rejects its topology with "<node path>: <property>: <problem>".
struct Rejected {
  const char* file;
  const char* message_start;
};

class ValidationRejects : public ::testing::TestWithParam<Rejected> {};

TEST_P(ValidationRejects, WithAMessageNamingNodeAndProperty) {
  auto m = load_fixture(GetParam().file);
  ASSERT_FALSE(m) << GetParam().file << " loaded";
  EXPECT_THAT(m.error().message, StartsWith(GetParam().message_start));
}

INSTANTIATE_TEST_SUITE_P(
    Rules, ValidationRejects,
    ::testing::Values(
        Rejected{"bad-gpu-phandle.dts", "/pciex@6030200000000/pci@0,1: ibm,gpu: phandle 0x99 resolves to no node"},
        Rejected{"bad-gpu-kind.dts",
                 "/pciex@6030200000000/pci@0,1: ibm,gpu: phandle 0x"},  // ... is /memory@40000000000, which is not a GPU
        Rejected{"bad-memory-region-phandle.dts",
                 "/pciex@6030200000000/pci@0: memory-region: phandle 0x99 resolves to no node"},
        Rejected{"bad-memory-region-kind.dts", "/pciex@6030200000000/pci@0: memory-region: phandle 0x"},
        Rejected{"bad-nvlink-kind.dts", "/pciex@6230200000000/pci@1: ibm,nvlink: phandle 0x"},
        Rejected{"overlapping-gpu-windows.dts",
                 "/memory@42000000000: reg: range 0x41f00000000..0x43f00000000 overlaps /memory@40000000000"},
        Rejected{"gpu-window-over-host-ram.dts", "/memory@40000000000: reg: range 0x40000000000..0x42000000000 overlaps /memory@0"},
        Rejected{"gpu-without-memory.dts",
                 "/pciex@600c3c0400000/3d@4: ibm,npu: no NVLink bridge of this GPU leads to a memory node"},
        Rejected{"memory-reg-3-cells.dts", "/memory@40000000000: reg: expected <base size> as 2 u64 cells (16 bytes), found 12 bytes"},
        Rejected{"memory-reg-size-0.dts", "/memory@44000000000: reg: size is 0"},
        Rejected{"real-size-above-window.dts",
                 "/memory@240000000000: nv2pt,real-memory-size: 0x4000000000 is larger than the window (0x2000000000)"},
        Rejected{"duplicate-pci-address.dts", "/pciex@6030200000000/pci@0"},  // ...: reg: PCI address 0006:00:00.0 is also used by ...
        Rejected{"missing-iommu-group.dts", "/pciex@620c3c0500000/3d@5: nv2pt,iommu-group: missing"},
        Rejected{"npu-not-pointing-back.dts",
                 "/pciex@600c3c0400000/3d@4: ibm,npu: entry 1: /pciex@6030200000000/pci@1 does not point back (its ibm,gpu is "
                 "/pciex@600c3c0400000/3d@5)"},
        Rejected{"unaligned-window.dts", "/memory@242000000000: reg: window 0x242000001000 size 0x2000000000 is not 64 KiB aligned"},
        // The kernel's bad-DT cases are incomplete topologies: rejected unless validation is off.
        Rejected{"kernel-gpu-no-npu.dts", "/pciex@6030200000000/pci@0: ibm,gpu: /pciex@600c3c0400000/3d@4 does not list this bridge"},
        Rejected{"kernel-no-memory-region.dts", "/pciex@6030200000000/pci@0: memory-region: missing"},
        Rejected{"kernel-no-tgt.dts", "/pciex@6030200000000/pci@0: ibm,device-tgt-addr: missing"},
        Rejected{"kernel-no-nvlink-speed.dts", "/pciex@6030200000000/pci@0: ibm,nvlink-speed: missing"},
        Rejected{"kernel-no-link-index.dts", "/xscom@603fc00000000/npu@5011000/link@0: ibm,npu-link-index: missing"}),
    [](const auto& info) {
      std::string name = info.param.file;
      name = name.substr(0, name.find('.'));
      std::ranges::replace(name, '-', '_');
      return name;
    });

TEST(ValidationRejects, MessagesNameTheWrongTarget) {
  auto kind = load_fixture("bad-gpu-kind.dts");
  ASSERT_FALSE(kind);
  EXPECT_THAT(kind.error().message, ::testing::EndsWith("is /memory@40000000000, which is not a GPU"));
  auto dup = load_fixture("duplicate-pci-address.dts");
  ASSERT_FALSE(dup);
  EXPECT_THAT(dup.error().message,
              ::testing::MatchesRegex("/pciex@6030200000000/pci@0(,1)?: reg: PCI address 0006:00:00.0 is also used by "
                                      "/pciex@6030200000000/pci@0(,1)?"));
}

TEST(ValidationOff, LoadsTheKernelsBadTrees) {
  for (const char* file : {"kernel-one-atsd.dts", "kernel-no-atsd.dts", "kernel-gpu-no-npu.dts", "kernel-no-memory-region.dts",
                           "kernel-no-tgt.dts", "memory-reg-3-cells.dts", "kernel-no-nvlink-speed.dts",
                           "kernel-no-link-index.dts"}) {
    auto m = load_fixture(file, {.validate = false});
    ASSERT_TRUE(m) << file << ": " << m.error().message;
    EXPECT_EQ(m->pci_functions().size(), 18u) << file;
  }
}

TEST(ValidationOff, KernelCasesShowUpInTheModel) {
  auto bridge0 = addr("0006:00:00.0");
  {
    auto m = load_fixture("kernel-one-atsd.dts");  // a legal old-firmware tree: loads even with validation
    ASSERT_TRUE(m) << m.error().message;
    EXPECT_EQ(m->atsd_address(*m->find_bridge(bridge0)), 0x0006'0302'0080'0000u);
    EXPECT_EQ(m->atsd_address(*m->find_bridge(addr("0006:00:02.0"))), std::nullopt);  // link 4: no entry 4
  }
  {
    auto m = load_fixture("kernel-no-atsd.dts");
    ASSERT_TRUE(m) << m.error().message;
    EXPECT_TRUE(m->phb_of(m->function_of(*m->find_bridge(bridge0))).atsd.empty());
    EXPECT_EQ(m->atsd_address(*m->find_bridge(bridge0)), std::nullopt);
  }
  {
    auto m = load_fixture("kernel-gpu-no-npu.dts", {.validate = false});
    const Gpu* gpu = m->find_gpu(addr("0004:04:00.0"));
    ASSERT_TRUE(gpu);  // still a GPU (an NVIDIA 3D controller), without NVLink
    EXPECT_TRUE(gpu->bridges.empty());
    EXPECT_EQ(m->memory_of(*gpu), nullptr);
    EXPECT_EQ(m->gpu_of(*m->find_bridge(bridge0)), gpu);  // the bridge still names it
  }
  {
    auto m = load_fixture("kernel-no-memory-region.dts", {.validate = false});
    EXPECT_EQ(m->find_bridge(bridge0)->memory, std::nullopt);
    EXPECT_TRUE(m->memory_of(*m->find_gpu(addr("0004:04:00.0"))));  // found through the other bridge
  }
  {
    auto m = load_fixture("kernel-no-tgt.dts", {.validate = false});
    EXPECT_EQ(m->find_bridge(bridge0)->tgt, std::nullopt);
    EXPECT_EQ(m->find_gpu(addr("0004:04:00.0"))->tgt, std::nullopt);  // NPU #0 has none
  }
  {
    auto m = load_fixture("memory-reg-3-cells.dts", {.validate = false});
    const GpuMemory* mem = m->memory_of(*m->find_gpu(addr("0004:04:00.0")));
    ASSERT_TRUE(mem);
    EXPECT_EQ(mem->window, std::nullopt);
    EXPECT_EQ(m->device_tree().property(mem->node, "reg")->size(), 12u);
  }
  {
    auto m = load_fixture("kernel-no-nvlink-speed.dts", {.validate = false});
    EXPECT_EQ(m->find_bridge(bridge0)->link_speed, std::nullopt);
  }
  {
    auto m = load_fixture("kernel-no-link-index.dts", {.validate = false});
    EXPECT_EQ(m->link_of(*m->find_bridge(bridge0))->index, std::nullopt);
    EXPECT_EQ(m->atsd_address(*m->find_bridge(bridge0)), std::nullopt);
  }
}

TEST(ValidationOff, StructuralErrorsStillFail) {
  // Without a reg a PCI function has no address; nothing can be built.
  auto m = load_fixture("duplicate-pci-address.dts", {.validate = false});
  EXPECT_FALSE(m);
}

}  // namespace
}  // namespace nv2pt::platform
