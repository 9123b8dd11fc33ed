// The host-interaction sequence QEMU 7.2 runs for one GPU and its two bridges
// (docs/qemu-7.2.md#host-interaction-sequence: realize, then the first machine reset), driven through the C++ API with
// the same structs and argsz values, then checked against the invariants. The real QEMU runs the same sequence through
// the interposer in the end-to-end tests.
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>

#include "vfio/host.h"
#include "vfio/test_host.h"

namespace nv2pt::vfio {
namespace {

using namespace testing;

uint64_t region_offset(unsigned index) { return uint64_t{index} << 40; }

struct RealizedDevice {
  PciDevice* device = nullptr;
  std::vector<std::pair<void*, size_t>> maps;
  int intx = -1, err = -1, req = -1;
};

class QemuSequence : public ::testing::Test {
 protected:
  template <class T>
  long ioctl(PciDevice* d, unsigned long cmd, T* arg) {
    auto r = d->ioctl(as, cmd, reinterpret_cast<unsigned long>(arg));
    return r ? *r : -r.error().value;
  }
  long ioctl(Container& c, unsigned long cmd, unsigned long arg) {
    auto r = c.ioctl(as, cmd, arg);
    return r ? *r : -r.error().value;
  }

  void set_eventfd(PciDevice* d, uint32_t index, int fd) {
    alignas(8) uint8_t buf[sizeof(vfio_irq_set) + 4];
    auto* set = reinterpret_cast<vfio_irq_set*>(buf);
    *set = {sizeof(buf), VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index, 0, 1};
    std::memcpy(buf + sizeof(vfio_irq_set), &fd, 4);
    EXPECT_EQ(ioctl(d, VFIO_DEVICE_SET_IRQS, buf), 0);
  }

  // Realize steps from VFIO_GROUP_GET_DEVICE_FD on, for one device.
  RealizedDevice realize(const std::string& name) {
    RealizedDevice r;
    auto d = group->get_device(as, name);
    EXPECT_TRUE(d);
    if (!d) return r;
    r.device = *d;
    vfio_device_info info{20};
    EXPECT_EQ(ioctl(r.device, VFIO_DEVICE_GET_INFO, &info), 0);
    EXPECT_TRUE(info.flags & VFIO_DEVICE_FLAGS_PCI);
    EXPECT_GE(info.num_regions, 8u);
    EXPECT_GE(info.num_irqs, 3u);
    std::vector<vfio_region_info> bars(6);
    for (unsigned i = 0; i < 6; ++i) {
      bars[i] = {sizeof(vfio_region_info)};
      bars[i].index = i;
      EXPECT_EQ(ioctl(r.device, VFIO_DEVICE_GET_REGION_INFO, &bars[i]), 0);
    }
    vfio_irq_info err_info{sizeof(err_info), 0, VFIO_PCI_ERR_IRQ_INDEX};
    ioctl(r.device, VFIO_DEVICE_GET_IRQ_INFO, &err_info);
    vfio_region_info cfg{sizeof(cfg)};
    cfg.index = VFIO_PCI_CONFIG_REGION_INDEX;
    EXPECT_EQ(ioctl(r.device, VFIO_DEVICE_GET_REGION_INFO, &cfg), 0);
    std::vector<std::byte> config(4096);
    EXPECT_TRUE(r.device->read(config, cfg.offset));
    EXPECT_EQ(std::to_integer<int>(config[0]) | std::to_integer<int>(config[1]) << 8,
              name.starts_with("0004") ? 0x10de : 0x1014);
    // ROM sizing.
    uint32_t rom = 0, ones = 0xfffff800;
    EXPECT_TRUE(r.device->read(std::as_writable_bytes(std::span(&rom, 1)), cfg.offset + 0x30));
    EXPECT_TRUE(r.device->write(std::as_bytes(std::span(&ones, 1)), cfg.offset + 0x30));
    EXPECT_TRUE(r.device->write(std::as_bytes(std::span(&rom, 1)), cfg.offset + 0x30));
    for (unsigned i = 0; i < 6; ++i) {
      if (!bars[i].size) continue;
      uint32_t bar = 0;
      EXPECT_TRUE(r.device->read(std::as_writable_bytes(std::span(&bar, 1)), cfg.offset + 0x10 + 4 * i));
      if (bars[i].flags & VFIO_REGION_INFO_FLAG_MMAP) {
        auto p = r.device->mmap(as, nullptr, bars[i].size, PROT_READ | PROT_WRITE, MAP_SHARED, bars[i].offset);
        EXPECT_TRUE(p) << name << " BAR" << i;
        if (p) r.maps.push_back({*p, bars[i].size});
      }
    }
    uint8_t pin = 0;
    EXPECT_TRUE(r.device->read(std::as_writable_bytes(std::span(&pin, 1)), cfg.offset + 0x3d));
    if (pin) {
      r.intx = eventfd(0, EFD_CLOEXEC);
      set_eventfd(r.device, VFIO_PCI_INTX_IRQ_INDEX, r.intx);
    }
    // The NVLink2 quirks: scan every region for the vendor type, query index 9 twice (size, then caps).
    for (unsigned i = 0; i < info.num_regions; ++i) {
      vfio_region_info probe{sizeof(probe)};
      probe.index = i;
      ioctl(r.device, VFIO_DEVICE_GET_REGION_INFO, &probe);
    }
    vfio_region_info first{sizeof(vfio_region_info)};
    first.index = 9;
    EXPECT_EQ(ioctl(r.device, VFIO_DEVICE_GET_REGION_INFO, &first), 0);
    std::vector<uint8_t> full(first.argsz);
    auto* nv2 = reinterpret_cast<vfio_region_info*>(full.data());
    nv2->argsz = first.argsz;
    nv2->index = 9;
    EXPECT_EQ(ioctl(r.device, VFIO_DEVICE_GET_REGION_INFO, nv2), 0);
    EXPECT_EQ(nv2->cap_offset, 32u);
    auto p = r.device->mmap(as, nullptr, nv2->size, PROT_READ | PROT_WRITE, MAP_SHARED, nv2->offset);
    EXPECT_TRUE(p) << name << " region 9";
    if (p) r.maps.push_back({*p, nv2->size});
    r.err = eventfd(0, EFD_CLOEXEC);
    set_eventfd(r.device, VFIO_PCI_ERR_IRQ_INDEX, r.err);
    r.req = eventfd(0, EFD_CLOEXEC);
    set_eventfd(r.device, VFIO_PCI_REQ_IRQ_INDEX, r.req);
    return r;
  }

  void TearDown() override {
    for (RealizedDevice& d : devices) {
      for (auto [p, len] : d.maps) {
        munmap(p, len);
        d.device->munmap(p, len);
      }
      group->device_released(*d.device);
      for (int fd : {d.intx, d.err, d.req}) {
        if (fd >= 0) close(fd);
      }
    }
    host->release_group(*group);
  }

  mm::AddressSpace as{process_options(1)};
  std::unique_ptr<Host> host;
  Group* group = nullptr;
  std::vector<RealizedDevice> devices;
};

TEST_F(QemuSequence, RealizeThenFirstResetOneGpuTwoBridges) {
  host = std::move(Host::create(platform::Machine::load_default()).value());
  ClientMemory guest_ram(64 * MiB);

  // Realize of the first device of the group: steps 1-13.
  ASSERT_EQ(host->iommu_group_of(platform::PciAddress::parse("0004:04:00.0").value()), 4);
  group = host->open_group(4).value();
  vfio_group_status status{8};
  ASSERT_TRUE(group->get_status(status));
  ASSERT_TRUE(status.flags & VFIO_GROUP_FLAGS_VIABLE);
  std::shared_ptr<Container> container = host->open_container();
  EXPECT_EQ(ioctl(*container, VFIO_GET_API_VERSION, 0), 0);
  EXPECT_EQ(ioctl(*container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU), 0);
  EXPECT_EQ(ioctl(*container, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU), 0);
  EXPECT_EQ(ioctl(*container, VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_v2_IOMMU), 1);
  ASSERT_TRUE(group->set_container(container));
  EXPECT_EQ(ioctl(*container, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_v2_IOMMU), 0);
  vfio_iommu_spapr_register_memory reg{24, 0, guest_ram.ua(), guest_ram.size()};
  EXPECT_EQ(ioctl(*container, VFIO_IOMMU_SPAPR_REGISTER_MEMORY, reinterpret_cast<unsigned long>(&reg)), 0);
  vfio_iommu_spapr_tce_info info{32};
  EXPECT_EQ(ioctl(*container, VFIO_IOMMU_SPAPR_TCE_GET_INFO, reinterpret_cast<unsigned long>(&info)), 0);
  EXPECT_EQ(info.ddw.pgsizes, (1ull << 12) | (1ull << 16));
  EXPECT_EQ(info.dma32_window_start, 0u);
  vfio_iommu_spapr_tce_remove remove{16, 0, 0};
  EXPECT_EQ(ioctl(*container, VFIO_IOMMU_SPAPR_TCE_REMOVE, reinterpret_cast<unsigned long>(&remove)), 0);

  // Steps 14-24 for the GPU and both bridges.
  for (const char* name : {"0004:04:00.0", "0006:00:00.0", "0006:00:00.1"}) devices.push_back(realize(name));
  ASSERT_EQ(devices.size(), 3u);
  EXPECT_NE(devices[0].intx, -1);  // the GPU has INTA
  // (skiboot gives the emulated bridges INTA too, so QEMU wires INTx for them as well.)

  // First machine reset, devices in reverse order.
  for (auto it = devices.rbegin(); it != devices.rend(); ++it) {
    PciDevice* d = it->device;
    uint16_t cmd = 0;
    EXPECT_TRUE(d->write(std::as_bytes(std::span(&cmd, 1)), region_offset(7) + 4));
    if (it->intx >= 0) {
      vfio_irq_set off{sizeof(off), VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0, 0};
      EXPECT_EQ(ioctl(d, VFIO_DEVICE_SET_IRQS, &off), 0);
    }
    if (d->reset_works()) {
      EXPECT_EQ(ioctl(d, VFIO_DEVICE_RESET, static_cast<int*>(nullptr)), 0);
    }
    uint32_t zero = 0;
    for (unsigned bar = 0; bar < 6; ++bar)
      EXPECT_TRUE(d->write(std::as_bytes(std::span(&zero, 1)), region_offset(7) + 0x10 + 4 * bar));
    if (it->intx >= 0) set_eventfd(d, VFIO_PCI_INTX_IRQ_INDEX, it->intx);
  }
  vfio_iommu_spapr_tce_create create{40, 0, 12, 0, 0x40000000, 2, 0, ~0ull};
  EXPECT_EQ(ioctl(*container, VFIO_IOMMU_SPAPR_TCE_CREATE, reinterpret_cast<unsigned long>(&create)), 0);
  EXPECT_EQ(create.start_addr, 0u);
  // spapr_phb_nvgpu_setup maps the GPU RAM region into system memory: the pre-registration listener registers it.
  auto [gpu_ram, gpu_ram_size] = devices[0].maps.back();
  vfio_iommu_spapr_register_memory reg_gpu{24, 0, reinterpret_cast<uint64_t>(gpu_ram), gpu_ram_size};
  EXPECT_EQ(ioctl(*container, VFIO_IOMMU_SPAPR_REGISTER_MEMORY, reinterpret_cast<unsigned long>(&reg_gpu)), 0);
  vfio_eeh_pe_op eeh{40, 0, VFIO_EEH_PE_ENABLE};
  EXPECT_EQ(ioctl(*container, VFIO_EEH_PE_OP, reinterpret_cast<unsigned long>(&eeh)), 0);

  // What the host holds now: guest RAM pinned and charged, GPU RAM registered as device memory and not charged,
  // one 1 GiB window in both PEs of the compound group, nothing touched in GPU RAM, no HMI.
  SpaprTceIommu& iommu = *container->iommu();
  EXPECT_EQ(iommu.registrations().size(), 2u);
  EXPECT_EQ(as.locked_memory().locked_pages(), guest_ram.size() / (64 * KiB) + iommu.charged_pages());
  EXPECT_EQ(as.pinner().pinned_pages(), guest_ram.size() / (64 * KiB));
  ASSERT_EQ(iommu.windows().size(), 1u);
  for (iommu::Pe* pe : group->table_group()->members()) EXPECT_EQ(pe->window(0), iommu.windows()[0].table);
  EXPECT_EQ(host->hardware().gpu_ram(platform::PciAddress::parse("0004:04:00.0").value())->populated_pages(), 0u);
  EXPECT_EQ(host->hardware().hmi_log().count(), 0u);
  InvariantReport r = check_invariants(as, {&iommu});
  EXPECT_TRUE(r.ok()) << r.to_string();

  // Guest TCE traffic as QEMU forwards it under TCG: H_PUT_TCE(ioba 0, ram + 16 MiB | 3) -> one MAP_DMA.
  vfio_iommu_type1_dma_map map{32, 3, guest_ram.ua() + 16 * MiB, 0, 0x1000};
  EXPECT_EQ(ioctl(*container, VFIO_IOMMU_MAP_DMA, reinterpret_cast<unsigned long>(&map)), 0);
  EXPECT_EQ(iommu.windows()[0].table->get(0) & ~3ull, *as.pinner().ua_to_hpa(guest_ram.ua() + 16 * MiB));
  // The GPU (PE) reaches the guest page's bytes through the TCE.
  std::memcpy(reinterpret_cast<void*>(guest_ram.ua() + 16 * MiB), "dma", 4);
  auto hpa = group->table_group()->members()[0]->translate(0x10, /*write=*/false);
  ASSERT_TRUE(hpa);
  char seen[4] = {};
  ASSERT_TRUE(as.pinner().dma_read(*hpa - 0x10, std::as_writable_bytes(std::span(seen))));
  EXPECT_STREQ(seen, "dma");
}

}  // namespace
}  // namespace nv2pt::vfio
