#include "vfio/nvlink2_regions.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdio>

#include "base/checked.h"
#include "base/host_page.h"

namespace nv2pt::vfio {
namespace {

constexpr uint64_t kAtsdSize = 64 * 1024;

vfio_region_info_cap_nvlink2_ssatgt ssatgt_cap(uint64_t tgt) {
  vfio_region_info_cap_nvlink2_ssatgt cap{};
  cap.header.id = VFIO_REGION_INFO_CAP_NVLINK2_SSATGT;
  cap.header.version = 1;
  cap.tgt = tgt;
  return cap;
}

void warn(const std::string& message) { std::fprintf(stderr, "nv2pt: vfio-pci: %s\n", message.c_str()); }

// The GPU RAM window of one GPU (vfio_pci_nvgpu_*).
class GpuRamRegion final : public ExtraRegion {
 public:
  GpuRamRegion(platform::Hardware& hardware, platform::GpuRam& ram, platform::PciAddress gpu, uint64_t gpu_hpa,
               uint64_t size, uint64_t tgt)
      : hardware_(hardware), ram_(ram), gpu_(gpu), gpu_hpa_(gpu_hpa), size_(size), tgt_(tgt) {}

  std::string name() const override { return "nvlink2-gpu-ram"; }
  uint32_t type() const override { return kNvidiaGpuRamRegionType; }
  uint32_t subtype() const override { return VFIO_REGION_SUBTYPE_NVIDIA_NVLINK2_RAM; }
  uint64_t size() const override { return size_; }
  uint32_t flags() const override {
    return VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP;
  }
  void add_capabilities(CapabilityChain& chain) const override { chain.add(ssatgt_cap(tgt_)); }

  Result<size_t> read(std::span<std::byte> out, uint64_t pos) override {
    if (pos >= size_) return fail(kEINVAL);
    out = out.first(std::min<uint64_t>(out.size(), size_ - pos));
    NV2PT_TRY(ram_.read(pos, out));
    return out.size();
  }
  Result<size_t> write(std::span<const std::byte> in, uint64_t pos) override {
    if (pos >= size_) return fail(kEINVAL);
    in = in.first(std::min<uint64_t>(in.size(), size_ - pos));
    NV2PT_TRY(ram_.write(pos, in));
    return in.size();
  }

  Result<void*> mmap(mm::AddressSpace& caller, void* addr, size_t length, int prot, uint64_t pgoff) override {
    // Once per device-open lifetime, even after a munmap or a failed mmap (vfio_pci_nvgpu_mmap; kept: QEMU maps it
    // once).
    if (mapped_once_) return fail(kEPERM);
    mapped_once_ = true;
    if (length > size_) return fail(kEINVAL);
    // The kernel registers dev_hpa = window base whatever the offset, but faults at base + offset
    // (docs/kernel/regions.md#gpu-ram-mmap): refused.
    if (pgoff != 0) return fail(kEINVAL);
    void* mapping = NV2PT_TRY(ram_.map(addr, 0, length, prot));
    const uint64_t ua = reinterpret_cast<uint64_t>(mapping);
    // Pre-register the mapping as device memory: no pin, no locked-memory charge (the seed's patch 3).
    auto region = caller.registry().add_device(ua, length >> kHostPageShift, gpu_hpa_);
    if (!region) {
      ram_.unmap(mapping, length);
      ::munmap(mapping, length);
      return fail(region.error());
    }
    (void)caller.pinner().add_special_mapping(ua, length);
    mm_ = &caller;
    registration_ = *region;
    ua_ = ua;
    length_ = length;
    return mapping;
  }

  void munmap(void* addr, size_t length) override {
    ram_.unmap(addr, length);
    // The registration stays until the device is released, as in the kernel (no vm_ops close).
    if (mm_ && reinterpret_cast<uint64_t>(addr) == ua_) (void)mm_->pinner().remove_special_mapping(ua_, length_);
  }

  void release() override {
    // Back to the host: destroy the guest's ATS context, map LPID 0 (done whether or not KVM was ever set).
    (void)hardware_.npu_unmap_lpar(gpu_);
    if (!registration_) return;
    if (auto put = mm_->registry().put(registration_); !put) {
      // TCEs still map the GPU RAM: vfio_pci_nvgpu_release warns and leaks the region. The model reports it the same
      // way and keeps the region registered, so those TCEs never point at a freed registration.
      warn("GPU RAM of " + gpu_.to_string() + " released while TCEs still map it; its registration stays");
    }
    registration_.reset();
  }

 private:
  platform::Hardware& hardware_;
  platform::GpuRam& ram_;
  platform::PciAddress gpu_;
  uint64_t gpu_hpa_;
  uint64_t size_;
  uint64_t tgt_;
  bool mapped_once_ = false;
  mm::AddressSpace* mm_ = nullptr;
  mm::RegionRef registration_;
  uint64_t ua_ = 0;
  uint64_t length_ = 0;
};

// The ATSD register block of one NVLink (vfio_pci_npu2_*).
class AtsdRegion final : public ExtraRegion {
 public:
  AtsdRegion(platform::Hardware& hardware, uint64_t atsd, uint64_t tgt, uint32_t link_speed)
      : hardware_(hardware), atsd_(atsd), tgt_(tgt), link_speed_(link_speed) {}

  std::string name() const override { return "nvlink2-atsd"; }
  uint32_t type() const override { return kIbmAtsdRegionType; }
  uint32_t subtype() const override { return VFIO_REGION_SUBTYPE_IBM_NVLINK2_ATSD; }
  uint64_t size() const override { return kAtsdSize; }
  uint32_t flags() const override {
    return VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP;
  }
  void add_capabilities(CapabilityChain& chain) const override {
    chain.add(ssatgt_cap(tgt_));
    vfio_region_info_cap_nvlink2_lnkspd speed{};
    speed.header.id = VFIO_REGION_INFO_CAP_NVLINK2_LNKSPD;
    speed.header.version = 1;
    speed.link_speed = link_speed_;
    chain.add(speed);
  }

  Result<size_t> read(std::span<std::byte> out, uint64_t pos) override {
    if (pos >= kAtsdSize) return fail(kEINVAL);
    out = out.first(std::min<uint64_t>(out.size(), kAtsdSize - pos));
    NV2PT_TRY(hardware_.atsd_read(atsd_, pos, out));
    return out.size();
  }
  Result<size_t> write(std::span<const std::byte> in, uint64_t pos) override {
    if (pos >= kAtsdSize) return fail(kEINVAL);
    in = in.first(std::min<uint64_t>(in.size(), kAtsdSize - pos));
    NV2PT_TRY(hardware_.atsd_write(atsd_, pos, in));
    return in.size();
  }

  Result<void*> mmap(mm::AddressSpace& caller, void* addr, size_t length, int prot, uint64_t) override {
    if (length != kAtsdSize) return fail(kEINVAL);
    auto fd = hardware_.atsd_fd(atsd_);
    if (!fd) return fail(kENODEV);
    void* p = ::mmap(addr, length, prot, MAP_SHARED | (addr ? MAP_FIXED : 0), *fd, 0);
    if (p == MAP_FAILED) return fail(Errno{errno});
    (void)caller.pinner().add_special_mapping(reinterpret_cast<uint64_t>(p), length);
    mappings_.push_back({&caller, reinterpret_cast<uint64_t>(p), length});
    return p;
  }
  void munmap(void* addr, size_t length) override {
    for (auto it = mappings_.begin(); it != mappings_.end(); ++it) {
      if (it->ua == reinterpret_cast<uint64_t>(addr) && it->length == length) {
        (void)it->mm->pinner().remove_special_mapping(it->ua, it->length);
        mappings_.erase(it);
        return;
      }
    }
  }
  void release() override {}

 private:
  struct Mapping {
    mm::AddressSpace* mm;
    uint64_t ua;
    uint64_t length;
  };
  platform::Hardware& hardware_;
  uint64_t atsd_;
  uint64_t tgt_;
  uint32_t link_speed_;
  std::vector<Mapping> mappings_;
};

}  // namespace

Result<std::unique_ptr<ExtraRegion>> make_gpu_ram_region(const platform::Machine& machine,
                                                         platform::Hardware& hardware, const platform::Gpu& gpu,
                                                         std::optional<uint64_t> kvm_lpid) {
  const platform::DeviceTree& dt = machine.device_tree();
  if (gpu.bridges.empty()) return fail(kENODEV);  // no NPU #0
  const platform::NvlinkBridge& npu = machine.bridges()[gpu.bridges.front()];
  // v5.10+: no memory-region means "not an NV2 NPU" (the P8 case), silently.
  if (!dt.has_property(npu.node, "memory-region")) return fail(kENODEV);
  auto phandle = dt.read_u32(npu.node, "memory-region");
  if (!phandle) return fail(kEINVAL);
  auto mem_node = dt.resolve_phandle(*phandle);
  if (!mem_node) return fail(kEINVAL);
  auto reg = dt.property(*mem_node, "reg");
  if (!reg || reg->size() != 16) return fail(kEINVAL);
  const uint64_t gpu_hpa = NV2PT_TRY(dt.read_u64_index(*mem_node, "reg", 0));
  const uint64_t size = NV2PT_TRY(dt.read_u64_index(*mem_node, "reg", 1));
  auto tgt = dt.read_u64(npu.node, "ibm,device-tgt-addr");
  if (!tgt) {
    warn("no ibm,device-tgt-addr on " + dt.path(npu.node));
    return fail(kEFAULT);
  }
  platform::GpuRam* ram = hardware.gpu_ram(gpu.address);
  if (!ram) return fail(kEINVAL);
  if (kvm_lpid) {
    // The "KVM set" notifier, replayed at registration because KVM is already there. Its failure is ignored, as
    // the kernel ignores the notifier's answer.
    constexpr uint64_t kMsrDr = 1ull << 4, kMsrPr = 1ull << 14;
    if (!hardware.npu_map_lpar(gpu.address, *kvm_lpid, kMsrDr | kMsrPr)) warn("mapping the GPU to the guest failed");
  }
  return std::unique_ptr<ExtraRegion>(new GpuRamRegion(hardware, *ram, gpu.address, gpu_hpa, size, *tgt));
}

Result<std::unique_ptr<ExtraRegion>> make_atsd_region(const platform::Machine& machine, platform::Hardware& hardware,
                                                      const platform::NvlinkBridge& bridge) {
  const platform::DeviceTree& dt = machine.device_tree();
  if (!bridge.gpu) return fail(kENODEV);
  if (!dt.has_property(bridge.node, "memory-region")) return fail(kENODEV);
  std::optional<uint32_t> link_index;
  if (auto link_phandle = dt.read_u32(bridge.node, "ibm,nvlink")) {
    if (auto link_node = dt.resolve_phandle(*link_phandle)) {
      if (auto index = dt.read_u32(*link_node, "ibm,npu-link-index")) link_index = *index;
    }
  }
  if (!link_index) {
    warn("no NVLink index for " + dt.path(bridge.node));
    return fail(kENODEV);
  }
  const std::vector<uint64_t>& atsd_list = machine.phbs()[bridge.phb].atsd;
  uint64_t atsd = 0;
  if (*link_index < atsd_list.size()) {
    atsd = atsd_list[*link_index];
  } else if (!atsd_list.empty()) {
    warn("no ATSD for link " + std::to_string(*link_index) + " of " + dt.path(bridge.node) + ". Using fallback");
    atsd = atsd_list.front();
  }
  auto tgt = dt.read_u64(bridge.node, "ibm,device-tgt-addr");
  if (!tgt) return fail(kEFAULT);
  auto speed = dt.read_u32(bridge.node, "ibm,nvlink-speed");
  if (!speed) return fail(kEFAULT);
  if (atsd == 0) {
    warn("no ATSD at all for " + dt.path(bridge.node) + ": no region (the kernel would offer a size-0 one)");
    return fail(kENODEV);
  }
  return std::unique_ptr<ExtraRegion>(new AtsdRegion(hardware, atsd, *tgt, *speed));
}

}  // namespace nv2pt::vfio
