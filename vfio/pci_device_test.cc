// The vfio-pci device with its GPU-RAM and ATSD regions (docs/kernel/regions.md), over the default Witherspoon
// topology and the kernel-* test topologies.
#include "vfio/pci_device.h"

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>

#include "platform/npu2_bridge.h"
#include "vfio/host.h"
#include "vfio/nvlink2_regions.h"
#include "vfio/test_host.h"

namespace nv2pt::vfio {
namespace {

using namespace testing;
using platform::PciAddress;

const std::string kTopologies = NV2PT_TEST_TOPOLOGIES;
constexpr uint64_t kGpuWindow = 128 * GiB;
constexpr uint64_t kGpu0Hpa = 0x0400'0000'0000ull;

uint64_t region_offset(unsigned index) { return uint64_t{index} << 40; }

class DeviceTest : public ::testing::Test {
 protected:
  void load(const std::string& topology = "", platform::HmiPolicy policy = platform::HmiPolicy::kLog) {
    platform::Machine machine = platform::Machine::load_default();
    if (!topology.empty()) {
      auto tree = platform::DeviceTree::load(kTopologies + "/" + topology);
      ASSERT_TRUE(tree) << tree.error().message;
      auto m = platform::Machine::load(std::move(*tree), {.validate = false});
      ASSERT_TRUE(m) << m.error().message;
      machine = std::move(*m);
    }
    HostOptions options;
    options.hardware.hmi_policy = policy;
    auto host = Host::create(std::move(machine), options);
    ASSERT_TRUE(host);
    host_ = std::move(*host);
  }
  // Group 4 opened and attached to a v2 container, as QEMU sets it up.
  void attach(int group_id = 4) {
    if (!host_) load();
    container_ = host_->open_container();
    auto g = host_->open_group(group_id);
    ASSERT_TRUE(g);
    group_ = *g;
    ASSERT_TRUE(group_->set_container(container_));
    ASSERT_TRUE(container_->set_iommu(VFIO_SPAPR_TCE_v2_IOMMU));
  }
  Result<PciDevice*> open(const std::string& name) { return group_->get_device(as_, name); }
  PciDevice* must_open(const std::string& name) {
    auto d = open(name);
    EXPECT_TRUE(d) << name << ": " << (d ? "" : errno_name(d.error()));
    return d ? *d : nullptr;
  }
  Result<long> ioctl(PciDevice* d, unsigned long cmd, void* arg) {
    return d->ioctl(as_, cmd, reinterpret_cast<unsigned long>(arg));
  }
  vfio_device_info info(PciDevice* d) {
    vfio_device_info i{sizeof(i)};
    EXPECT_TRUE(ioctl(d, VFIO_DEVICE_GET_INFO, &i));
    return i;
  }
  // GET_REGION_INFO with a buffer of `argsz` bytes.
  std::vector<uint8_t> region_info(PciDevice* d, unsigned index, uint32_t argsz, Result<long>* result = nullptr) {
    std::vector<uint8_t> buf(std::max<size_t>(argsz, sizeof(vfio_region_info)), 0);
    auto* ri = reinterpret_cast<vfio_region_info*>(buf.data());
    ri->argsz = argsz;
    ri->index = index;
    auto r = ioctl(d, VFIO_DEVICE_GET_REGION_INFO, ri);
    if (result) *result = r;
    else EXPECT_TRUE(r) << "region " << index;
    return buf;
  }
  static const vfio_region_info& ri(const std::vector<uint8_t>& buf) {
    return *reinterpret_cast<const vfio_region_info*>(buf.data());
  }
  template <class Cap>
  static const Cap& cap_at(const std::vector<uint8_t>& buf, size_t offset) {
    return *reinterpret_cast<const Cap*>(buf.data() + offset);
  }
  void close_device(PciDevice* d) { group_->device_released(*d); }

  // Trains a GPU's NVLinks the way its driver does: skiboot's procedures, run through each bridge's config space
  // with VFIO config writes (write the procedure number, poll the status until complete).
  bool train_gpu_links(const std::string& gpu) {
    const platform::Gpu* g = host_->machine().find_gpu(PciAddress::parse(gpu).value());
    for (size_t b : g->bridges) {
      PciDevice* bridge = must_open(host_->machine().bridges()[b].address.to_string());
      if (!bridge) return false;
      for (uint32_t procedure : {4u, 5u, 6u, 9u}) {
        const uint64_t cfg = region_offset(VFIO_PCI_CONFIG_REGION_INDEX);
        if (!bridge->write(std::as_bytes(std::span(&procedure, 1)), cfg + platform::Npu2Bridge::kProcControl))
          return false;
        uint32_t status = 0;
        for (int poll = 0; poll < 1000 && !(status & platform::Npu2Bridge::kStatusComplete); ++poll) {
          if (!bridge->read(std::as_writable_bytes(std::span(&status, 1)), cfg + platform::Npu2Bridge::kProcStatus))
            return false;
        }
        if (!(status & platform::Npu2Bridge::kStatusComplete) ||
            (status & platform::Npu2Bridge::kStatusCodeMask) != platform::Npu2Bridge::kCodeSuccess)
          return false;
      }
    }
    return host_->hardware().gpu_links_trained(g->address);
  }

  void TearDown() override {
    if (group_) host_->release_group(*group_);
  }

  mm::AddressSpace as_{process_options(1)};
  std::unique_ptr<Host> host_;
  std::shared_ptr<Container> container_;
  Group* group_ = nullptr;
};

TEST_F(DeviceTest, GpuWithACompleteTreeHasTheGpuRamRegion) {
  attach();
  PciDevice* gpu = must_open("0004:04:00.0");
  EXPECT_EQ(info(gpu).num_regions, 10u);
  EXPECT_EQ(info(gpu).flags & VFIO_DEVICE_FLAGS_PCI, VFIO_DEVICE_FLAGS_PCI);
  EXPECT_EQ(info(gpu).num_irqs, 5u);
  auto buf = region_info(gpu, 9, 64);
  EXPECT_EQ(ri(buf).size, kGpuWindow);
  EXPECT_EQ(ri(buf).flags, VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP |
                               VFIO_REGION_INFO_FLAG_CAPS);
  EXPECT_EQ(ri(buf).offset, region_offset(9));
  auto& type = cap_at<vfio_region_info_cap_type>(buf, 32);
  EXPECT_EQ(type.type, 0x800010deu);
  EXPECT_EQ(type.subtype, 1u);
}

TEST_F(DeviceTest, ShortArgszSaysHowMuchIsNeeded) {
  attach();
  PciDevice* gpu = must_open("0004:04:00.0");
  auto buf = region_info(gpu, 9, 32);
  EXPECT_EQ(ri(buf).argsz, 64u);
  EXPECT_EQ(ri(buf).cap_offset, 0u);
  EXPECT_TRUE(ri(buf).flags & VFIO_REGION_INFO_FLAG_CAPS);
}

TEST_F(DeviceTest, GpuChainIsTypeThenSsatgt) {
  attach();
  PciDevice* gpu = must_open("0004:04:00.0");
  auto buf = region_info(gpu, 9, 64);
  EXPECT_EQ(ri(buf).cap_offset, 32u);
  auto& type = cap_at<vfio_region_info_cap_type>(buf, 32);
  EXPECT_EQ(type.header.id, VFIO_REGION_INFO_CAP_TYPE);
  EXPECT_EQ(type.header.next, 48u);
  auto& tgt = cap_at<vfio_region_info_cap_nvlink2_ssatgt>(buf, 48);
  EXPECT_EQ(tgt.header.id, VFIO_REGION_INFO_CAP_NVLINK2_SSATGT);
  EXPECT_EQ(tgt.header.next, 0u);
  EXPECT_EQ(tgt.tgt, 0x0400'0000'0000ull);  // ibm,device-tgt-addr of 0006:00:00.0
}

TEST_F(DeviceTest, BridgeChainIsTypeSsatgtLnkspd) {
  attach();
  PciDevice* bridge = must_open("0006:00:00.1");
  auto small = region_info(bridge, 9, 32);
  EXPECT_EQ(ri(small).argsz, 80u);
  auto buf = region_info(bridge, 9, 80);
  EXPECT_EQ(ri(buf).size, 64 * KiB);
  auto& type = cap_at<vfio_region_info_cap_type>(buf, 32);
  EXPECT_EQ(type.type, 0x80001014u);
  EXPECT_EQ(type.header.next, 48u);
  auto& tgt = cap_at<vfio_region_info_cap_nvlink2_ssatgt>(buf, 48);
  EXPECT_EQ(tgt.header.next, 64u);
  EXPECT_EQ(tgt.tgt, 0x0400'0000'0000ull);
  auto& speed = cap_at<vfio_region_info_cap_nvlink2_lnkspd>(buf, 64);
  EXPECT_EQ(speed.header.id, VFIO_REGION_INFO_CAP_NVLINK2_LNKSPD);
  EXPECT_EQ(speed.header.next, 0u);
  EXPECT_EQ(speed.link_speed, 9u);
}

TEST_F(DeviceTest, MissingAtsdEntryFallsBackToEntry0) {
  load("kernel-one-atsd.dts");
  attach(5);  // GPU 0004:05:00.0's bridges use links 2 and 3
  PciDevice* bridge = must_open("0006:00:01.1");
  auto buf = region_info(bridge, 9, 80);
  EXPECT_EQ(ri(buf).size, 64 * KiB);
  void* p = bridge->mmap(as_, nullptr, 64 * KiB, PROT_READ | PROT_WRITE, MAP_SHARED, region_offset(9)).value();
  EXPECT_EQ(host_->hardware().atsd_fd(0x0006030200800000ull).has_value(), true);
  munmap(p, 64 * KiB);
  bridge->munmap(p, 64 * KiB);
}

TEST_F(DeviceTest, BridgeWithoutAtsdGetsNoRegion) {  // the kernel offers size 0 (QEMU 7.2 aborts)
  load("kernel-no-atsd.dts");
  attach();
  PciDevice* bridge = must_open("0006:00:00.0");
  EXPECT_EQ(info(bridge).num_regions, 9u);
}

TEST_F(DeviceTest, GpuWithoutNpuHasNoExtraRegion) {
  load("kernel-gpu-no-npu.dts");
  attach();
  PciDevice* gpu = must_open("0004:04:00.0");
  EXPECT_EQ(info(gpu).num_regions, 9u);
}

TEST_F(DeviceTest, NpuWithoutMemoryRegionIsNotAnNvlink2Device) {
  load("kernel-no-memory-region.dts");
  attach();
  PciDevice* gpu = must_open("0004:04:00.0");
  EXPECT_EQ(info(gpu).num_regions, 9u);
}

TEST_F(DeviceTest, NpuWithoutTgtFailsTheGpuOpen) {
  load("kernel-no-tgt.dts");
  attach();
  EXPECT_EQ(open("0004:04:00.0").error(), kEFAULT);
  EXPECT_EQ(open("0006:00:00.0").error(), kEFAULT);  // the bridge needs it too (vfio_pci_ibm_npu2_init)
}

TEST_F(DeviceTest, ThreeCellMemoryRegFailsTheOpen) {
  load("memory-reg-3-cells.dts");
  attach();
  EXPECT_EQ(open("0004:04:00.0").error(), kEINVAL);
}

TEST_F(DeviceTest, BridgeWithoutSpeedFailsAndWithoutLinkIndexHasNoRegion) {
  load("kernel-no-nvlink-speed.dts");
  attach();
  EXPECT_EQ(open("0006:00:00.0").error(), kEFAULT);
  host_->release_group(*group_);
  group_ = nullptr;
  host_.reset();
  load("kernel-no-link-index.dts");
  attach();
  PciDevice* bridge = must_open("0006:00:00.0");
  EXPECT_EQ(info(bridge).num_regions, 9u);
}

TEST_F(DeviceTest, RegionIndexPastTheEndIsEINVAL) {
  attach();
  PciDevice* gpu = must_open("0004:04:00.0");
  Result<long> r;
  region_info(gpu, 10, 64, &r);
  EXPECT_EQ(r.error(), kEINVAL);
}

TEST_F(DeviceTest, GpuRamReadWriteRoundTripsAndClipsAtTheEnd) {
  attach();
  PciDevice* gpu = must_open("0004:04:00.0");
  for (uint64_t pos : {0ull, 0x1234ull}) {
    const char text[] = "nvlink2";
    auto w = gpu->write(std::as_bytes(std::span(text)), region_offset(9) + pos);
    ASSERT_TRUE(w);
    EXPECT_EQ(*w, sizeof(text));
    char back[sizeof(text)] = {};
    ASSERT_TRUE(gpu->read(std::as_writable_bytes(std::span(back)), region_offset(9) + pos));
    EXPECT_STREQ(back, text);
  }
  std::byte tail[16];
  // Reading across the end is clipped; at the end it is EINVAL.
  EXPECT_EQ(gpu->read(tail, region_offset(9) + kGpuWindow - 4).value_or(0), 4u);
  EXPECT_EQ(gpu->read(tail, region_offset(9) + kGpuWindow).error(), kEINVAL);
}

TEST_F(DeviceTest, MmapGpuRamRegistersDeviceMemoryWithoutCharge) {
  attach();
  PciDevice* gpu = must_open("0004:04:00.0");
  const uint64_t locked = as_.locked_memory().locked_pages();
  auto p = gpu->mmap(as_, nullptr, kGpuWindow, PROT_READ | PROT_WRITE, MAP_SHARED, region_offset(9));
  ASSERT_TRUE(p);
  const uint64_t ua = reinterpret_cast<uint64_t>(*p);
  auto region = as_.registry().lookup(ua, kGpuWindow);
  ASSERT_TRUE(region);
  EXPECT_TRUE(region->is_device());
  EXPECT_EQ(region->entries(), kGpuWindow / (64 * KiB));
  EXPECT_EQ(region->dev_hpa(), kGpu0Hpa);
  EXPECT_EQ(as_.locked_memory().locked_pages(), locked);
  EXPECT_EQ(as_.pinner().pinned_pages(), 0u);
  region.reset();
  munmap(*p, kGpuWindow);
  gpu->munmap(*p, kGpuWindow);
  close_device(gpu);
  EXPECT_TRUE(as_.registry().empty());  // released with the device
}

TEST_F(DeviceTest, PrivateOrOversizedMmapIsEINVAL) {
  attach();
  PciDevice* gpu = must_open("0004:04:00.0");
  EXPECT_EQ(gpu->mmap(as_, nullptr, 64 * KiB, PROT_READ, MAP_PRIVATE, region_offset(9)).error(), kEINVAL);
  // Neither refusal uses up the one mmap of this open (vfio_pci_nvgpu_mmap): the same open still maps.
  EXPECT_EQ(gpu->mmap(as_, nullptr, kGpuWindow + 64 * KiB, PROT_READ, MAP_SHARED, region_offset(9)).error(),
            kEINVAL);
  auto p = gpu->mmap(as_, nullptr, 1 * GiB, PROT_READ, MAP_SHARED, region_offset(9));
  ASSERT_TRUE(p);
  munmap(*p, 1 * GiB);
  gpu->munmap(*p, 1 * GiB);
}

// vfio_pci_nvgpu_mmap records the user address only after its length and offset checks: a mmap refused by them
// leaves the one mmap of this open for a corrected retry (only a failed registration uses it up: see
// MmapOverARegisteredRangeIsEINVALThenEPERM).
TEST_F(DeviceTest, RefusedGpuRamMmapLeavesTheOneMmapForARetry) {
  attach();
  PciDevice* gpu = must_open("0004:04:00.0");
  EXPECT_EQ(gpu->mmap(as_, nullptr, kGpuWindow + 64 * KiB, PROT_READ, MAP_SHARED, region_offset(9)).error(),
            kEINVAL);
  EXPECT_EQ(gpu->mmap(as_, nullptr, 64 * KiB, PROT_READ, MAP_SHARED, region_offset(9) + 64 * KiB).error(), kEINVAL);
  auto p = gpu->mmap(as_, nullptr, 1 * GiB, PROT_READ | PROT_WRITE, MAP_SHARED, region_offset(9));
  ASSERT_TRUE(p);
  EXPECT_NE(as_.registry().lookup(reinterpret_cast<uint64_t>(*p), 64 * KiB), nullptr);
  munmap(*p, 1 * GiB);
  gpu->munmap(*p, 1 * GiB);
  EXPECT_EQ(gpu->mmap(as_, nullptr, 1 * GiB, PROT_READ, MAP_SHARED, region_offset(9)).error(), kEPERM);
}

TEST_F(DeviceTest, SecondMmapIsEPERMUntilReopen) {
  attach();
  PciDevice* gpu = must_open("0004:04:00.0");
  auto p = gpu->mmap(as_, nullptr, 1 * GiB, PROT_READ | PROT_WRITE, MAP_SHARED, region_offset(9));
  ASSERT_TRUE(p);
  munmap(*p, 1 * GiB);
  gpu->munmap(*p, 1 * GiB);
  EXPECT_EQ(gpu->mmap(as_, nullptr, 1 * GiB, PROT_READ, MAP_SHARED, region_offset(9)).error(), kEPERM);
  close_device(gpu);
  gpu = must_open("0004:04:00.0");
  auto again = gpu->mmap(as_, nullptr, 1 * GiB, PROT_READ, MAP_SHARED, region_offset(9));
  EXPECT_TRUE(again);
  if (again) {
    munmap(*again, 1 * GiB);
    gpu->munmap(*again, 1 * GiB);
  }
}

TEST_F(DeviceTest, FaultedPageIsTheWindowPage) {
  attach();
  PciDevice* gpu = must_open("0004:04:00.0");
  // Train the GPU's links first: touching GPU RAM before that is an HMI.
  ASSERT_TRUE(train_gpu_links("0004:04:00.0"));
  auto p = gpu->mmap(as_, nullptr, 1 * GiB, PROT_READ | PROT_WRITE, MAP_SHARED, region_offset(9));
  ASSERT_TRUE(p);
  auto* bytes = static_cast<volatile uint8_t*>(*p);
  bytes[5 * 64 * KiB + 3] = 0x5a;  // faults in page 5 only
  platform::GpuRam* ram = host_->hardware().gpu_ram(PciAddress::parse("0004:04:00.0").value());
  EXPECT_EQ(ram->populated_pages(), 1u);
  std::byte back{};
  ASSERT_TRUE(ram->read(5 * 64 * KiB + 3, std::span(&back, 1)));
  EXPECT_EQ(back, std::byte{0x5a});
  const uint64_t ua = reinterpret_cast<uint64_t>(*p) + 5 * 64 * KiB;
  EXPECT_EQ(as_.registry().lookup(ua, 64 * KiB)->ua_to_hpa(ua, 16), kGpu0Hpa + 5 * 64 * KiB);
  EXPECT_EQ(host_->hardware().hmi_log().count(), 0u);
  munmap(*p, 1 * GiB);
  gpu->munmap(*p, 1 * GiB);
}

TEST_F(DeviceTest, NonZeroOffsetIsEINVAL) {  // docs/kernel/regions.md#gpu-ram-mmap
  attach();
  PciDevice* gpu = must_open("0004:04:00.0");
  EXPECT_EQ(gpu->mmap(as_, nullptr, 64 * KiB, PROT_READ, MAP_SHARED, region_offset(9) + 64 * KiB).error(), kEINVAL);
}

TEST_F(DeviceTest, MmapOverARegisteredRangeIsEINVALThenEPERM) {
  attach();
  PciDevice* gpu = must_open("0004:04:00.0");
  ClientMemory ram(2 * MiB);
  vfio_iommu_spapr_register_memory reg{sizeof(reg), 0, ram.ua(), ram.size()};
  ASSERT_TRUE(container_->iommu()->register_memory(as_, reg));
  auto p = gpu->mmap(as_, reinterpret_cast<void*>(ram.ua()), 2 * MiB, PROT_READ, MAP_SHARED | MAP_FIXED,
                     region_offset(9));
  EXPECT_EQ(p.error(), kEINVAL);
  EXPECT_EQ(gpu->mmap(as_, nullptr, 2 * MiB, PROT_READ, MAP_SHARED, region_offset(9)).error(), kEPERM);
}

TEST_F(DeviceTest, AtsdMmapIsExactly64K) {
  attach();
  PciDevice* bridge = must_open("0006:00:00.0");
  EXPECT_EQ(bridge->mmap(as_, nullptr, 128 * KiB, PROT_READ, MAP_SHARED, region_offset(9)).error(), kEINVAL);
  auto p = bridge->mmap(as_, nullptr, 64 * KiB, PROT_READ | PROT_WRITE, MAP_SHARED, region_offset(9));
  ASSERT_TRUE(p);
  // The mapping and the pread path see the same ATSD registers (AVA at +0x8).
  static_cast<volatile uint64_t*>(*p)[1] = 0x1234000;
  uint64_t ava = 0;
  ASSERT_TRUE(bridge->read(std::as_writable_bytes(std::span(&ava, 1)), region_offset(9) + 8));
  EXPECT_EQ(ava, 0x1234000u);
  munmap(*p, 64 * KiB);
  bridge->munmap(*p, 64 * KiB);
}

TEST_F(DeviceTest, MmapPastTheExtraRegionsIsEINVAL) {
  attach();
  PciDevice* gpu = must_open("0004:04:00.0");
  EXPECT_EQ(gpu->mmap(as_, nullptr, 64 * KiB, PROT_READ, MAP_SHARED, region_offset(11)).error(), kEINVAL);
}

TEST_F(DeviceTest, ReleaseWhileTcesMapGpuRamKeepsTheRegistration) {  // vfio_pci_nvgpu_release: reported, kept
  attach();
  PciDevice* gpu = must_open("0004:04:00.0");
  auto p = gpu->mmap(as_, nullptr, 1 * GiB, PROT_READ | PROT_WRITE, MAP_SHARED, region_offset(9));
  ASSERT_TRUE(p);
  const uint64_t ua = reinterpret_cast<uint64_t>(*p);
  vfio_iommu_spapr_register_memory reg{sizeof(reg), 0, ua, 1 * GiB};
  ASSERT_TRUE(container_->iommu()->register_memory(as_, reg));  // shares the device region (used 2)
  vfio_iommu_type1_dma_map map{sizeof(map), 3, ua, 0, 1 * MiB};
  ASSERT_TRUE(container_->iommu()->map_dma(as_, map));  // default window
  close_device(gpu);
  auto region = as_.registry().lookup(ua, 64 * KiB);
  ASSERT_TRUE(region);  // still there: TCEs point into it
  EXPECT_EQ(region->mapped(), 1u + 256u);  // 1 MiB in the 4 KiB default window
  InvariantReport r = check_invariants(as_, {container_->iommu()});
  EXPECT_TRUE(r.ok()) << r.to_string();
  munmap(*p, 1 * GiB);
}

TEST_F(DeviceTest, GroupStatusViabilityAndOwnership) {
  load();
  auto g = host_->open_group(4);
  ASSERT_TRUE(g);
  EXPECT_EQ(host_->open_group(4).error(), kEBUSY);
  EXPECT_EQ(host_->open_group(7).error(), kENOENT);
  vfio_group_status status{sizeof(status)};
  ASSERT_TRUE((*g)->get_status(status));
  EXPECT_EQ(status.flags, VFIO_GROUP_FLAGS_VIABLE);
  ASSERT_TRUE(host_->machine().set_driver(PciAddress::parse("0006:00:00.1").value(), "nvidia"));
  ASSERT_TRUE((*g)->get_status(status));
  EXPECT_EQ(status.flags & VFIO_GROUP_FLAGS_VIABLE, 0u);
  auto c = host_->open_container();
  ASSERT_TRUE((*g)->set_container(c));
  ASSERT_TRUE(c->set_iommu(VFIO_SPAPR_TCE_v2_IOMMU));
  EXPECT_EQ((*g)->get_device(as_, "0004:04:00.0").error(), kEINVAL);  // not viable
  ASSERT_TRUE(host_->machine().set_driver(PciAddress::parse("0006:00:00.1").value(), ""));
  auto d = (*g)->get_device(as_, "0004:04:00.0");
  ASSERT_TRUE(d);
  EXPECT_EQ((*g)->get_device(as_, "0004:05:00.0").error(), kENODEV);  // another group's device
  EXPECT_EQ((*g)->unset_container().error(), kEBUSY);
  (*g)->device_released(**d);
  EXPECT_TRUE((*g)->unset_container());
  EXPECT_EQ(c->iommu(), nullptr);
  host_->release_group(**g);
}

TEST_F(DeviceTest, SetIrqsBoundsChecks) {  // CVE-2016-9083 / CVE-2016-9084
  attach();
  PciDevice* gpu = must_open("0004:04:00.0");
  alignas(8) uint8_t buf[sizeof(vfio_irq_set) + 16] = {};
  struct Set {
    vfio_irq_set& hdr;
    int32_t* fds;
  } set{*reinterpret_cast<vfio_irq_set*>(buf), reinterpret_cast<int32_t*>(buf + sizeof(vfio_irq_set))};
  set.hdr.argsz = sizeof(buf);
  set.hdr.flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
  set.hdr.index = VFIO_PCI_MSI_IRQ_INDEX;
  set.hdr.start = 1;
  set.hdr.count = UINT32_MAX;  // start + count wraps
  EXPECT_EQ(ioctl(gpu, VFIO_DEVICE_SET_IRQS, buf).error(), kEINVAL);
  set.hdr.start = 0;
  set.hdr.count = 0x40000001;  // count * 4 overflows 32 bits
  EXPECT_EQ(ioctl(gpu, VFIO_DEVICE_SET_IRQS, buf).error(), kEINVAL);
  set.hdr.index = 7;
  set.hdr.count = 1;
  EXPECT_EQ(ioctl(gpu, VFIO_DEVICE_SET_IRQS, buf).error(), kEINVAL);
  set.hdr.index = VFIO_PCI_INTX_IRQ_INDEX;
  set.hdr.argsz = offsetofend(vfio_irq_set, count) + 3;  // too short for one fd
  EXPECT_EQ(ioctl(gpu, VFIO_DEVICE_SET_IRQS, buf).error(), kEINVAL);
  set.hdr.argsz = sizeof(buf);
  set.hdr.count = 1;
  set.fds[0] = eventfd(0, EFD_CLOEXEC);
  EXPECT_TRUE(ioctl(gpu, VFIO_DEVICE_SET_IRQS, buf));
  // Loopback trigger reaches the eventfd.
  vfio_irq_set fire{sizeof(fire), VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_INTX_IRQ_INDEX, 0, 1};
  EXPECT_TRUE(ioctl(gpu, VFIO_DEVICE_SET_IRQS, &fire));
  uint64_t n = 0;
  EXPECT_EQ(::read(set.fds[0], &n, sizeof(n)), 8);
  EXPECT_EQ(n, 1u);
  ::close(set.fds[0]);
}

TEST_F(DeviceTest, BarAccessWithMemoryDecodeOffNeverReachesTheDevice) {  // CVE-2020-12888
  attach();
  PciDevice* gpu = must_open("0004:04:00.0");
  uint32_t value = 0;
  uint16_t cmd = 0;
  ASSERT_TRUE(gpu->write(std::as_bytes(std::span(&cmd, 1)), region_offset(VFIO_PCI_CONFIG_REGION_INDEX) + 4));
  EXPECT_EQ(gpu->read(std::as_writable_bytes(std::span(&value, 1)), region_offset(0)).error(), kEIO);
  cmd = 0x2;  // memory space enable
  ASSERT_TRUE(gpu->write(std::as_bytes(std::span(&cmd, 1)), region_offset(VFIO_PCI_CONFIG_REGION_INDEX) + 4));
  EXPECT_TRUE(gpu->read(std::as_writable_bytes(std::span(&value, 1)), region_offset(0)));
}

// vfio_pci_read/vfio_pci_write return 0 for a zero count before any region check: config space past its end, a
// BAR past its end, a ROM write, the VGA region and an index past the extra regions all answer 0.
TEST_F(DeviceTest, ZeroLengthAccessIsZeroBeforeAnyRegionCheck) {
  attach();
  PciDevice* gpu = must_open("0004:04:00.0");
  const std::span<std::byte> none;
  const std::span<const std::byte> nothing;
  for (uint64_t offset : {region_offset(VFIO_PCI_CONFIG_REGION_INDEX) + 0x10000,  // past config space
                          region_offset(0),
                          region_offset(0) + (uint64_t{1} << 39),                 // past the BAR
                          region_offset(VFIO_PCI_ROM_REGION_INDEX),
                          region_offset(VFIO_PCI_VGA_REGION_INDEX),
                          region_offset(VFIO_PCI_NUM_REGIONS + 5)}) {
    auto r = gpu->read(none, offset);
    ASSERT_TRUE(r) << std::hex << offset << ": " << errno_name(r.error());
    EXPECT_EQ(*r, 0u);
    auto w = gpu->write(nothing, offset);
    ASSERT_TRUE(w) << std::hex << offset << ": " << errno_name(w.error());
    EXPECT_EQ(*w, 0u);
  }
  // A one-byte access to the same places is refused: the zero count is what makes them 0.
  std::byte one{};
  EXPECT_EQ(gpu->read(std::span(&one, 1), region_offset(VFIO_PCI_VGA_REGION_INDEX)).error(), kEINVAL);
  EXPECT_EQ(gpu->write(std::span<const std::byte>(&one, 1), region_offset(VFIO_PCI_ROM_REGION_INDEX)).error(),
            kEINVAL);
}

TEST_F(DeviceTest, HotResetInfoAndReset) {
  attach();
  PciDevice* gpu = must_open("0004:04:00.0");
  vfio_pci_hot_reset_info small{offsetofend(vfio_pci_hot_reset_info, count)};
  EXPECT_EQ(ioctl(gpu, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, &small).error(), kENOSPC);
  EXPECT_EQ(small.count, 1u);
  alignas(8) uint8_t full[sizeof(vfio_pci_hot_reset_info) + sizeof(vfio_pci_dependent_device)] = {};
  reinterpret_cast<vfio_pci_hot_reset_info*>(full)->argsz = sizeof(full);
  ASSERT_TRUE(ioctl(gpu, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, full));
  auto* dev = reinterpret_cast<vfio_pci_dependent_device*>(full + sizeof(vfio_pci_hot_reset_info));
  EXPECT_EQ(reinterpret_cast<vfio_pci_hot_reset_info*>(full)->count, 1u);
  EXPECT_EQ(dev->group_id, 4u);
  EXPECT_EQ(dev->segment, 4u);
  EXPECT_EQ(dev->bus, 4u);
  vfio_pci_hot_reset reset{};
  reset.argsz = sizeof(reset) + 4;
  reset.count = 1;
  Group* groups[] = {group_};
  EXPECT_TRUE(gpu->hot_reset(reset, groups));
  Group* none[] = {nullptr};
  EXPECT_EQ(gpu->hot_reset(reset, none).error(), kEINVAL);
  PciDevice* bridge = must_open("0006:00:00.0");
  EXPECT_EQ(ioctl(bridge, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, &small).error(), kENODEV);  // root bus
}

TEST_F(DeviceTest, HotResetIoctlDecodesAndResolvesGroupFdsInKernelOrder) {
  attach();
  PciDevice* gpu = must_open("0004:04:00.0");
  TestFds fds;
  fds.groups[5] = group_;
  fds.others.insert(9);
  // The header and one group fd after it.
  alignas(8) uint8_t buf[sizeof(vfio_pci_hot_reset) + sizeof(int32_t)] = {};
  struct Req {
    vfio_pci_hot_reset& hdr;
    int32_t& fd;
  } req{*reinterpret_cast<vfio_pci_hot_reset*>(buf), *reinterpret_cast<int32_t*>(buf + sizeof(vfio_pci_hot_reset))};
  auto reset = [&](PciDevice* d) {
    return d->ioctl(as_, VFIO_DEVICE_PCI_HOT_RESET, reinterpret_cast<unsigned long>(buf), fds);
  };
  req.hdr.argsz = sizeof(buf);
  req.hdr.count = 1;
  req.fd = 5;
  req.hdr.flags = 1;
  EXPECT_EQ(reset(gpu).error(), kEINVAL);
  req.hdr.flags = 0;
  req.hdr.count = 0;
  EXPECT_EQ(reset(gpu).error(), kEINVAL);
  req.hdr.count = 2;  // more than the bus has functions
  EXPECT_EQ(reset(gpu).error(), kEINVAL);
  req.hdr.count = 1;
  req.fd = 42;
  EXPECT_EQ(reset(gpu).error(), kEBADF);
  req.fd = 9;
  EXPECT_EQ(reset(gpu).error(), kEINVAL);
  req.fd = 5;
  EXPECT_EQ(reset(gpu), 0);
  // argsz is not checked against count: the fds right after the header are read.
  req.hdr.argsz = offsetofend(vfio_pci_hot_reset, count);
  EXPECT_EQ(reset(gpu), 0);
  // A function with no bus reset is ENODEV before the count is looked at.
  PciDevice* bridge = must_open("0006:00:00.0");
  req.hdr.count = 0;
  EXPECT_EQ(reset(bridge).error(), kENODEV);
  // The fds in a page the client cannot read: EFAULT.
  ClientMemory m(128 * KiB);
  ASSERT_EQ(mprotect(reinterpret_cast<void*>(m.ua() + 64 * KiB), 64 * KiB, PROT_NONE), 0);
  vfio_pci_hot_reset hdr{sizeof(hdr) + 4, 0, 1};
  const uint64_t at = m.ua() + 64 * KiB - sizeof(hdr);
  std::memcpy(reinterpret_cast<void*>(at), &hdr, sizeof(hdr));
  EXPECT_EQ(gpu->ioctl(as_, VFIO_DEVICE_PCI_HOT_RESET, at, fds).error(), kEFAULT);
  EXPECT_EQ(gpu->ioctl(as_, VFIO_DEVICE_PCI_HOT_RESET, m.ua() + 64 * KiB, fds).error(), kEFAULT);
}

TEST_F(DeviceTest, IoctlArgumentsTheClientCannotReachAreEfaultNotACrash) {
  attach();
  PciDevice* gpu = must_open("0004:04:00.0");
  ClientMemory none(64 * KiB, PROT_NONE);
  for (unsigned long cmd : {VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_REGION_INFO, VFIO_DEVICE_GET_IRQ_INFO,
                            VFIO_DEVICE_SET_IRQS, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, VFIO_DEVICE_PCI_HOT_RESET}) {
    EXPECT_EQ(gpu->ioctl(as_, cmd, none.ua()).error(), kEFAULT) << std::hex << cmd;
  }
  // Readable but not writable: the copy back faults.
  ClientMemory ro(64 * KiB);
  vfio_device_info info{sizeof(info)};
  std::memcpy(reinterpret_cast<void*>(ro.ua()), &info, sizeof(info));
  ASSERT_EQ(mprotect(reinterpret_cast<void*>(ro.ua()), 64 * KiB, PROT_READ), 0);
  EXPECT_EQ(gpu->ioctl(as_, VFIO_DEVICE_GET_INFO, ro.ua()).error(), kEFAULT);
  // SET_IRQS whose eventfd array runs into an unreadable page.
  ClientMemory m(128 * KiB);
  ASSERT_EQ(mprotect(reinterpret_cast<void*>(m.ua() + 64 * KiB), 64 * KiB, PROT_NONE), 0);
  vfio_irq_set set{sizeof(set) + 4, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_INTX_IRQ_INDEX, 0,
                   1};
  const uint64_t at = m.ua() + 64 * KiB - sizeof(set);
  std::memcpy(reinterpret_cast<void*>(at), &set, sizeof(set));
  EXPECT_EQ(gpu->ioctl(as_, VFIO_DEVICE_SET_IRQS, at).error(), kEFAULT);
}

}  // namespace
}  // namespace nv2pt::vfio

namespace nv2pt::vfio {
namespace {

class HmiTest : public DeviceTest {
 protected:
  // The death tests' child: the fatal policy, the GPU's RAM mapped, one write with its links untrained (from a
  // thread that blocks SIGBUS, as QEMU's main thread does, if asked).
  [[noreturn]] void write_untrained_gpu_ram(bool block_sigbus) {
    load("", platform::HmiPolicy::kFatal);
    attach();
    PciDevice* gpu = must_open("0004:04:00.0");
    auto p = gpu->mmap(as_, nullptr, 1 * GiB, PROT_READ | PROT_WRITE, MAP_SHARED, region_offset(9));
    if (block_sigbus) {
      sigset_t set;
      sigemptyset(&set);
      sigaddset(&set, SIGBUS);
      pthread_sigmask(SIG_BLOCK, &set, nullptr);
    }
    if (p) static_cast<volatile uint8_t*>(*p)[0] = 1;
    _exit(0);
  }
};

// The HMI rule at the user's mapping of GPU RAM: untrained links, beyond the real RAM, and a page mapped while
// trained touched again after a GPU reset untrained the links.
TEST_F(HmiTest, GpuRamTouchesFollowTheTrainingAndRealRamRule) {
  load("", platform::HmiPolicy::kLog);
  attach();
  PciDevice* gpu = must_open("0004:04:00.0");
  const PciAddress address = PciAddress::parse("0004:04:00.0").value();
  platform::HmiLog& log = host_->hardware().hmi_log();
  auto p = gpu->mmap(as_, nullptr, kGpuWindow, PROT_READ | PROT_WRITE, MAP_SHARED, region_offset(9));
  ASSERT_TRUE(p);
  auto* ram = static_cast<volatile uint8_t*>(*p);

  ram[0] = 1;  // links not trained yet
  ASSERT_EQ(log.count(), 1u);
  EXPECT_EQ(log.entries()[0].cause, platform::HmiCause::kUntrainedLink);
  EXPECT_EQ(log.entries()[0].hpa, kGpu0Hpa);
  EXPECT_EQ(log.entries()[0].gpu, address);

  ASSERT_TRUE(train_gpu_links("0004:04:00.0"));
  ram[64 * KiB] = 2;  // fine
  EXPECT_EQ(log.count(), 1u);
  ram[16 * GiB + 5] = 3;  // past the 16 GiB of real RAM behind the 128 GiB window
  ASSERT_EQ(log.count(), 2u);
  EXPECT_EQ(log.entries()[1].cause, platform::HmiCause::kBeyondRealRam);

  // A GPU reset drops its links: the page touched while trained is checked again.
  ASSERT_TRUE(ioctl(gpu, VFIO_DEVICE_RESET, nullptr));
  EXPECT_FALSE(host_->hardware().gpu_links_trained(address));
  ram[64 * KiB] = 4;
  if (host_->hardware().gpu_ram(address)->checks_present_pages()) {
    ASSERT_EQ(log.count(), 3u);
    EXPECT_EQ(log.entries()[2].cause, platform::HmiCause::kUntrainedLink);
  }
  munmap(*p, kGpuWindow);
  gpu->munmap(*p, kGpuWindow);
}

// Under the fatal policy (the default) the touching thread dies of SIGBUS, as on real hardware.
TEST_F(HmiTest, FatalPolicyKillsTheTouchingThread) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(write_untrained_gpu_ram(/*block_sigbus=*/false), ::testing::KilledBySignal(SIGBUS), "");
}

}  // namespace
}  // namespace nv2pt::vfio

namespace nv2pt::vfio {
namespace {

// QEMU's main thread blocks SIGBUS (it reads signals from a signalfd). A machine check cannot be blocked: the
// process still dies of SIGBUS instead of retrying the access forever.
TEST_F(HmiTest, FatalPolicyKillsAThreadThatBlocksSigbus) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(write_untrained_gpu_ram(/*block_sigbus=*/true), ::testing::KilledBySignal(SIGBUS), "");
}

}  // namespace
}  // namespace nv2pt::vfio
