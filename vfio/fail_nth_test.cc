// Allocation-failure injection over the QEMU 7.2 sequence (the steps of qemu_sequence_test.cc: realize of the
// GPU and its two bridges, the first machine reset, the DDW window, GPU RAM registration, EEH, one MAP_DMA), as
// the iommufd selftests' fail_nth does it: run the sequence with the 1st, 2nd, ... allocation failing until a run
// sees no injected failure. Every failure must come back as a clean errno, and once everything is closed the
// address space must be as it was: nothing locked, nothing pinned, nothing registered.
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <functional>

#include "base/fault_injection.h"
#include "vfio/host.h"
#include "vfio/test_host.h"

namespace nv2pt::vfio {
namespace {

using namespace testing;

uint64_t region_offset(unsigned index) { return uint64_t{index} << 40; }

// One run of the sequence against a fresh host; stops at the first call that fails.
class SequenceRun {
 public:
  SequenceRun(Host& host, mm::AddressSpace& as, uint64_t guest_ua, uint64_t guest_size)
      : host_(host), as_(as), guest_ua_(guest_ua), guest_size_(guest_size) {}

  // The step that failed and its error, or nullopt if the whole sequence ran.
  struct Failure {
    std::string step;
    Errno error;
  };
  std::optional<Failure> run(const std::function<void(const std::string&)>& after_step) {
    for (auto& [name, step] : steps()) {
      Result<void> r = step();
      after_step(name);
      if (!r) return Failure{name, r.error()};
    }
    return std::nullopt;
  }

  // Closes everything in the order a dying QEMU does (mappings, device fds, group fd, container fd).
  void close_all() {
    for (auto& d : devices_) {
      for (auto [p, len] : d.maps) {
        d.device->munmap(p, len);
        ::munmap(p, len);
      }
      group_->device_released(*d.device);
      for (int fd : d.eventfds) ::close(fd);
    }
    devices_.clear();
    if (group_) host_.release_group(*group_);
    group_ = nullptr;
    container_.reset();
  }

  SpaprTceIommu* iommu() const { return container_ ? container_->iommu() : nullptr; }

 private:
  struct Device {
    PciDevice* device;
    std::vector<std::pair<void*, size_t>> maps;
    std::vector<int> eventfds;
  };

  Result<void> check(Result<long> r) {
    if (!r) return fail(r.error());
    return {};
  }
  Result<void> container_ioctl(unsigned long cmd, void* arg) {
    return check(container_->ioctl(as_, cmd, reinterpret_cast<unsigned long>(arg)));
  }
  Result<void> device_ioctl(Device& d, unsigned long cmd, void* arg) {
    return check(d.device->ioctl(as_, cmd, reinterpret_cast<unsigned long>(arg)));
  }
  Result<void> set_eventfd(Device& d, uint32_t index) {
    const int fd = eventfd(0, EFD_CLOEXEC);
    d.eventfds.push_back(fd);
    alignas(8) uint8_t buf[sizeof(vfio_irq_set) + 4];
    auto* set = reinterpret_cast<vfio_irq_set*>(buf);
    *set = {sizeof(buf), VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index, 0, 1};
    std::memcpy(buf + sizeof(vfio_irq_set), &fd, 4);
    return device_ioctl(d, VFIO_DEVICE_SET_IRQS, buf);
  }

  // Realize steps from VFIO_GROUP_GET_DEVICE_FD on, for one device.
  Result<void> realize(const std::string& name) {
    PciDevice* device = NV2PT_TRY(group_->get_device(as_, name));
    devices_.push_back({device, {}, {}});
    Device& d = devices_.back();
    vfio_device_info info{20};
    NV2PT_TRY(device_ioctl(d, VFIO_DEVICE_GET_INFO, &info));
    for (unsigned i = 0; i < info.num_regions; ++i) {
      if (i == VFIO_PCI_VGA_REGION_INDEX) continue;  // not a VGA device: EINVAL, which QEMU ignores
      vfio_region_info region{sizeof(region)};
      region.index = i;
      NV2PT_TRY(device_ioctl(d, VFIO_DEVICE_GET_REGION_INFO, &region));
      std::vector<uint8_t> full(std::max<size_t>(region.argsz, sizeof(region)));
      auto* ri = reinterpret_cast<vfio_region_info*>(full.data());
      ri->argsz = region.argsz;
      ri->index = i;
      NV2PT_TRY(device_ioctl(d, VFIO_DEVICE_GET_REGION_INFO, ri));
      if (i != VFIO_PCI_CONFIG_REGION_INDEX && i != VFIO_PCI_ROM_REGION_INDEX &&
          (ri->flags & VFIO_REGION_INFO_FLAG_MMAP)) {
        void* p = NV2PT_TRY(device->mmap(as_, nullptr, ri->size, PROT_READ | PROT_WRITE, MAP_SHARED, ri->offset));
        d.maps.push_back({p, ri->size});
      }
    }
    std::vector<std::byte> config(256);
    NV2PT_TRY(device->read(config, region_offset(VFIO_PCI_CONFIG_REGION_INDEX)));
    if (std::to_integer<int>(config[0x3d])) NV2PT_TRY(set_eventfd(d, VFIO_PCI_INTX_IRQ_INDEX));
    NV2PT_TRY(set_eventfd(d, VFIO_PCI_ERR_IRQ_INDEX));
    NV2PT_TRY(set_eventfd(d, VFIO_PCI_REQ_IRQ_INDEX));
    return {};
  }

  std::vector<std::pair<std::string, std::function<Result<void>()>>> steps() {
    return {
        {"open group", [&]() -> Result<void> {
           group_ = NV2PT_TRY(host_.open_group(4));
           container_ = host_.open_container();
           return {};
         }},
        {"SET_CONTAINER", [&] { return group_->set_container(container_); }},
        {"SET_IOMMU", [&] { return check(container_->ioctl(as_, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_v2_IOMMU)); }},
        {"REGISTER guest RAM", [&] {
           vfio_iommu_spapr_register_memory reg{24, 0, guest_ua_, guest_size_};
           return container_ioctl(VFIO_IOMMU_SPAPR_REGISTER_MEMORY, &reg);
         }},
        {"GET_INFO", [&] {
           vfio_iommu_spapr_tce_info info{32};
           return container_ioctl(VFIO_IOMMU_SPAPR_TCE_GET_INFO, &info);
         }},
        {"REMOVE default window", [&] {
           vfio_iommu_spapr_tce_remove remove{16, 0, 0};
           return container_ioctl(VFIO_IOMMU_SPAPR_TCE_REMOVE, &remove);
         }},
        {"realize GPU", [&] { return realize("0004:04:00.0"); }},
        {"realize bridge 0", [&] { return realize("0006:00:00.0"); }},
        {"realize bridge 1", [&] { return realize("0006:00:00.1"); }},
        {"reset", [&]() -> Result<void> {
           for (auto it = devices_.rbegin(); it != devices_.rend(); ++it) {
             uint16_t cmd = 0;
             NV2PT_TRY(it->device->write(std::as_bytes(std::span(&cmd, 1)), region_offset(7) + 4));
             if (it->device->reset_works()) NV2PT_TRY(device_ioctl(*it, VFIO_DEVICE_RESET, nullptr));
           }
           return {};
         }},
        {"TCE_CREATE", [&] {
           vfio_iommu_spapr_tce_create create{40, 0, 16, 0, 1ull << 32, 2, 0, ~0ull};
           return container_ioctl(VFIO_IOMMU_SPAPR_TCE_CREATE, &create);
         }},
        {"REGISTER GPU RAM", [&] {
           auto [p, len] = devices_[0].maps.back();
           vfio_iommu_spapr_register_memory reg{24, 0, reinterpret_cast<uint64_t>(p), len};
           return container_ioctl(VFIO_IOMMU_SPAPR_REGISTER_MEMORY, &reg);
         }},
        {"EEH enable", [&] {
           vfio_eeh_pe_op eeh{40, 0, VFIO_EEH_PE_ENABLE};
           return container_ioctl(VFIO_EEH_PE_OP, &eeh);
         }},
        {"MAP_DMA guest RAM", [&] {
           vfio_iommu_type1_dma_map map{32, 3, guest_ua_, 0, guest_size_};
           return container_ioctl(VFIO_IOMMU_MAP_DMA, &map);
         }},
        {"MAP_DMA GPU RAM", [&] {
           auto [p, len] = devices_[0].maps.back();
           vfio_iommu_type1_dma_map map{32, 3, reinterpret_cast<uint64_t>(p), 1ull << 31, 256 * MiB};
           return container_ioctl(VFIO_IOMMU_MAP_DMA, &map);
         }},
        {"UNMAP_DMA", [&] {
           vfio_iommu_type1_dma_unmap unmap{24, 0, 0, guest_size_};
           return container_ioctl(VFIO_IOMMU_UNMAP_DMA, &unmap);
         }},
    };
  }

  Host& host_;
  mm::AddressSpace& as_;
  const uint64_t guest_ua_, guest_size_;
  Group* group_ = nullptr;
  std::shared_ptr<Container> container_;
  std::vector<Device> devices_;
};

void expect_balanced(const mm::AddressSpace& as, const std::string& context) {
  EXPECT_EQ(as.locked_memory().locked_pages(), 0u) << context;
  EXPECT_EQ(as.locked_memory().underflows(), 0u) << context;
  EXPECT_TRUE(as.registry().empty()) << context;
  EXPECT_EQ(as.pinner().pinned_pages(), 0u) << context;
  EXPECT_EQ(as.pinner().unbalanced_unpins(), 0u) << context;
  InvariantReport r = check_invariants(as, {});
  EXPECT_TRUE(r.ok()) << context << ": " << r.to_string();
}

TEST(FailNth, QemuSequenceSurvivesEveryAllocationFailure) {
  ClientMemory guest_ram(32 * MiB);
  HostOptions options;
  options.hardware.hmi_policy = platform::HmiPolicy::kLog;
  auto host = Host::create(platform::Machine::load_default(), options);
  ASSERT_TRUE(host);

  // The sequence must run clean without injection first.
  {
    mm::AddressSpace as(process_options(1));
    SequenceRun run(**host, as, guest_ram.ua(), guest_ram.size());
    auto failure = run.run([](const std::string&) {});
    ASSERT_FALSE(failure) << failure->step << ": " << errno_name(failure->error);
    run.close_all();
    expect_balanced(as, "clean run");
  }

  uint64_t n = 1;
  for (; n < 10000; ++n) {
    const std::string context = "fail_nth " + std::to_string(n);
    mm::AddressSpace as(process_options(n + 1));
    SequenceRun run(**host, as, guest_ram.ua(), guest_ram.size());
    std::optional<SequenceRun::Failure> failure;
    bool fired = false;
    {
      ScopedFailNth arm(n);
      failure = run.run([&](const std::string& step) {
        const SpaprTceIommu* iommu = run.iommu();
        std::vector<const SpaprTceIommu*> containers;
        if (iommu && iommu->address_space()) containers.push_back(iommu);
        InvariantReport r = check_invariants(as, containers);
        EXPECT_TRUE(r.ok()) << context << " after " << step << ": " << r.to_string();
      });
      fired = arm.fired();
    }
    // An injected failure is never swallowed: the call that allocated reports it.
    EXPECT_TRUE(!fired || failure) << context << ": the injected failure vanished";
    if (failure) {
      // An injected failure surfaces as ENOMEM wherever it happens (no partial success, no other errno).
      EXPECT_TRUE(fired) << context << ": " << failure->step << " failed with " << errno_name(failure->error)
                         << " but nothing was injected";
      EXPECT_EQ(failure->error, kENOMEM) << context << ": " << failure->step;
    }
    run.close_all();
    expect_balanced(as, context);
    if (::testing::Test::HasFailure()) break;
    if (!fired) break;  // the whole sequence made fewer than n allocations: every one has been failed once
  }
  EXPECT_GT(n, 10u) << "the sequence should allocate on many paths";
  RecordProperty("allocations_failed", static_cast<int>(n - 1));
  std::printf("fail_nth: the sequence made %llu allocations; each was failed once\n",
              static_cast<unsigned long long>(n - 1));
}

}  // namespace
}  // namespace nv2pt::vfio
