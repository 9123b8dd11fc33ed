#include "vfio/pci_device.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "base/checked.h"
#include "base/fault_injection.h"
#include "vfio/capability_chain.h"
#include "vfio/extra_region.h"
#include "vfio/group.h"
#include "vfio/nvlink2_regions.h"
#include "vfio/pci_config.h"

namespace nv2pt::vfio {
namespace {

constexpr unsigned kRegionShift = 40;  // VFIO_PCI_OFFSET_SHIFT
constexpr uint64_t kRegionMask = (1ull << kRegionShift) - 1;

template <class T>
void copy_out(unsigned long arg, const T& value, size_t len = sizeof(T)) {
  std::memcpy(reinterpret_cast<void*>(arg), &value, len);
}

template <class T>
Result<void> copy_in(unsigned long arg, T& value, size_t len = sizeof(T)) {
  if (!arg) return fail(kEFAULT);
  std::memcpy(&value, reinterpret_cast<const void*>(arg), len);
  return {};
}

int dup_eventfd(int fd) { return fd < 0 ? -1 : fcntl(fd, F_DUPFD_CLOEXEC, 0); }

// An empty file: a shared mapping of it raises SIGBUS on every access, as the kernel's zapped BAR VMAs do while
// memory decode is off (vfio_pci_mmap_fault since the CVE-2020-12888 fix). One for the process, never closed.
int empty_memfd() {
  static const int fd = memfd_create("nv2pt-bar-decode-off", MFD_CLOEXEC);
  return fd;
}

}  // namespace

struct PciDevice::State {
  explicit State(platform::PciDeviceModel& model) : config(model) {}

  struct Mapping {
    mm::AddressSpace* as;  // whose pinner knows it as a special (PFN) mapping
    uint64_t ua;
    uint64_t length;
    int region;  // 0..5 BAR, >= 9 extra
    uint64_t pos = 0;      // BAR: offset into the BAR
    int prot = 0;          // BAR: the user's protection
    bool decoded = true;   // BAR: whether the mapping reaches the device (memory decode was on)
    bool revoked = false;  // the device was released while mapped: the range raises SIGBUS until munmap
  };
  struct IrqState {
    std::vector<int> fds;  // our references to the user's eventfds
    bool masked = false;
  };

  std::mutex mutex;
  int open_count = 0;
  PciConfig config;
  std::vector<std::unique_ptr<ExtraRegion>> extra;
  std::array<IrqState, VFIO_PCI_NUM_IRQS> irqs;
  std::vector<Mapping> mappings;

  void close_irqs(unsigned index) {
    for (int fd : irqs[index].fds) {
      if (fd >= 0) ::close(fd);
    }
    irqs[index] = {};
  }
};

PciDevice::PciDevice(const platform::Machine& machine, platform::Hardware& hardware,
                     const platform::PciFunction& function)
    : machine_(machine),
      hardware_(hardware),
      function_(function),
      address_(function.address),
      iommu_group_(function.iommu_group.value_or(0)),
      state_(std::make_unique<State>(*hardware.device(function.address))) {}

PciDevice::~PciDevice() {
  std::lock_guard lock(state_->mutex);
  for (auto& region : state_->extra) region->release();
  for (unsigned i = 0; i < VFIO_PCI_NUM_IRQS; ++i) state_->close_irqs(i);
}

platform::PciDeviceModel& PciDevice::model() const { return *hardware_.device(address_); }

// --- open / release (vfio_pci_enable / vfio_pci_disable) ---

// The caller is not kept: every mapping records the address space that made it.
Result<void> PciDevice::open(mm::AddressSpace& /*caller*/, std::optional<uint64_t> kvm_lpid) {
  std::lock_guard lock(state_->mutex);
  if (state_->open_count++ > 0) return {};
  state_->config.reset_virtual_state();
  // Enable hooks in kernel order: NVIDIA vendor -> GPU RAM, IBM vendor -> ATSD. ENODEV: not an NVLink2 device.
  Result<std::unique_ptr<ExtraRegion>> region = fail(kENODEV);
  if (function_.vendor_id == 0x10de && function_.kind == platform::PciFunctionKind::kGpu) {
    region = make_gpu_ram_region(machine_, hardware_, machine_.gpus()[function_.role_index], kvm_lpid);
  } else if (function_.vendor_id == 0x1014 && function_.kind == platform::PciFunctionKind::kNvlinkBridge) {
    region = make_atsd_region(machine_, hardware_, machine_.bridges()[function_.role_index]);
  }
  if (region && should_fail_allocation()) region = fail(kENOMEM);  // the vfio_pci_region array
  if (region) {
    state_->extra.push_back(std::move(*region));
  } else if (region.error() != kENODEV) {
    state_->open_count = 0;
    return fail(region.error());
  }
  return {};
}

void PciDevice::release() {
  std::lock_guard lock(state_->mutex);
  if (state_->open_count == 0 || --state_->open_count > 0) return;
  revoke_mappings();  // before the extra regions go: their mappings are unhooked through them
  for (auto& region : state_->extra) region->release();
  state_->extra.clear();
  for (unsigned i = 0; i < VFIO_PCI_NUM_IRQS; ++i) state_->close_irqs(i);
}

void PciDevice::revoke_mappings() {
  // In the kernel a mapping holds the device file open, so the device cannot be released under it. Here the
  // client's mapping outlives the device: it is cut off from the device (and from the GPU-RAM fault service,
  // which forgets it) and raises SIGBUS until the client unmaps it. It stays a special mapping, so it cannot be
  // pinned, and its record stays, so the client's munmap is still heard.
  for (State::Mapping& m : state_->mappings) {
    if (m.revoked) continue;
    if (m.region >= static_cast<int>(VFIO_PCI_NUM_REGIONS)) {
      const size_t i = m.region - VFIO_PCI_NUM_REGIONS;
      if (i < state_->extra.size()) state_->extra[i]->munmap(reinterpret_cast<void*>(m.ua), m.length);
      (void)m.as->pinner().add_special_mapping(m.ua, m.length);
    }
    (void)::mmap(reinterpret_cast<void*>(m.ua), m.length, m.prot, MAP_SHARED | MAP_FIXED, empty_memfd(), 0);
    m.revoked = true;
  }
}

int PciDevice::open_count() const {
  std::lock_guard lock(state_->mutex);
  return state_->open_count;
}

std::vector<std::string> PciDevice::extra_region_names() const {
  std::lock_guard lock(state_->mutex);
  std::vector<std::string> names;
  for (auto& r : state_->extra) names.push_back(r->name());
  return names;
}

bool PciDevice::reset_works() const {
  // A function reset exists: FLR, or a bus reset (the GPUs sit alone behind their port). The NPU's emulated
  // bridges sit on the PHB's root bus, where only FLR can reset them.
  if (model().has_flr()) return true;
  return function_.kind != platform::PciFunctionKind::kNvlinkBridge;
}

// --- ioctls ---

Result<long> PciDevice::ioctl(mm::AddressSpace& caller, unsigned long cmd, unsigned long arg) {
  (void)caller;
  switch (cmd) {
    case VFIO_DEVICE_GET_INFO: return get_info(arg);
    case VFIO_DEVICE_GET_REGION_INFO: return get_region_info(arg);
    case VFIO_DEVICE_GET_IRQ_INFO: return get_irq_info(arg);
    case VFIO_DEVICE_SET_IRQS: return set_irqs(arg);
    case VFIO_DEVICE_RESET: {
      if (!reset_works()) return fail(kEINVAL);
      std::lock_guard lock(state_->mutex);  // the reset rewrites the virtual config state
      reset_function(platform::PciDeviceModel::ResetKind::kFunctionLevel);
      return 0;
    }
    case VFIO_DEVICE_GET_PCI_HOT_RESET_INFO: return get_hot_reset_info(arg);
    default: return fail(kENOTTY);
  }
}

Result<long> PciDevice::get_info(unsigned long arg) {
  vfio_device_info info;
  const size_t minsz = offsetofend(vfio_device_info, num_irqs);
  NV2PT_TRY(copy_in(arg, info, minsz));
  if (info.argsz < minsz) return fail(kEINVAL);
  std::lock_guard lock(state_->mutex);
  info.flags = VFIO_DEVICE_FLAGS_PCI | (reset_works() ? VFIO_DEVICE_FLAGS_RESET : 0);
  info.num_regions = VFIO_PCI_NUM_REGIONS + static_cast<uint32_t>(state_->extra.size());
  info.num_irqs = VFIO_PCI_NUM_IRQS;
  copy_out(arg, info, minsz);
  return 0;
}

Result<long> PciDevice::get_region_info(unsigned long arg) {
  vfio_region_info info;
  const size_t minsz = offsetofend(vfio_region_info, offset);
  NV2PT_TRY(copy_in(arg, info, minsz));
  if (info.argsz < minsz) return fail(kEINVAL);
  std::lock_guard lock(state_->mutex);
  CapabilityChain caps;
  const uint32_t rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
  info.offset = uint64_t{info.index} << kRegionShift;
  info.cap_offset = 0;
  if (info.index == VFIO_PCI_CONFIG_REGION_INDEX) {
    info.size = state_->config.size();
    info.flags = rw;
  } else if (info.index <= VFIO_PCI_BAR5_REGION_INDEX) {
    const platform::PciDeviceModel::Bar bar = model().bar(static_cast<int>(info.index));
    info.size = bar.size;
    info.flags = bar.size ? rw : 0;
    if (bar.size && bar.mmappable && model().bar_fd(static_cast<int>(info.index)) >= 0)
      info.flags |= VFIO_REGION_INFO_FLAG_MMAP;
  } else if (info.index == VFIO_PCI_ROM_REGION_INDEX) {
    info.size = model().rom_size();
    info.flags = info.size ? VFIO_REGION_INFO_FLAG_READ : 0;
  } else if (info.index == VFIO_PCI_VGA_REGION_INDEX) {
    return fail(kEINVAL);  // not a VGA device
  } else {
    if (info.index >= VFIO_PCI_NUM_REGIONS + state_->extra.size()) return fail(kEINVAL);
    const ExtraRegion& region = *state_->extra[info.index - VFIO_PCI_NUM_REGIONS];
    info.size = region.size();
    info.flags = region.flags();
    vfio_region_info_cap_type type{};
    type.header.id = VFIO_REGION_INFO_CAP_TYPE;
    type.header.version = 1;
    type.type = region.type();
    type.subtype = region.subtype();
    caps.add(type);
    region.add_capabilities(caps);
  }
  if (!caps.empty()) {
    info.flags |= VFIO_REGION_INFO_FLAG_CAPS;
    if (info.argsz < sizeof(info) + caps.size()) {
      // Too small: say how much is needed; still a success (the client calls again).
      info.argsz = static_cast<uint32_t>(sizeof(info) + caps.size());
    } else {
      const std::vector<std::byte> placed = caps.placed_after(sizeof(info));
      std::memcpy(reinterpret_cast<char*>(arg) + sizeof(info), placed.data(), placed.size());
      info.cap_offset = sizeof(info);
    }
  }
  copy_out(arg, info, minsz);
  return 0;
}

uint32_t PciDevice::irq_count(unsigned index) const {
  switch (index) {
    case VFIO_PCI_INTX_IRQ_INDEX: return state_->config.interrupt_pin() ? 1 : 0;
    case VFIO_PCI_MSI_IRQ_INDEX: return state_->config.msi_vectors();
    case VFIO_PCI_MSIX_IRQ_INDEX: return state_->config.msix_vectors();
    case VFIO_PCI_ERR_IRQ_INDEX: return state_->config.is_pcie() ? 1 : 0;
    case VFIO_PCI_REQ_IRQ_INDEX: return 1;
    default: return 0;
  }
}

Result<long> PciDevice::get_irq_info(unsigned long arg) {
  vfio_irq_info info;
  const size_t minsz = offsetofend(vfio_irq_info, count);
  NV2PT_TRY(copy_in(arg, info, minsz));
  if (info.argsz < minsz || info.index >= VFIO_PCI_NUM_IRQS) return fail(kEINVAL);
  std::lock_guard lock(state_->mutex);
  if (info.index == VFIO_PCI_ERR_IRQ_INDEX && !state_->config.is_pcie()) return fail(kEINVAL);
  info.flags = VFIO_IRQ_INFO_EVENTFD;
  info.count = irq_count(info.index);
  info.flags |= info.index == VFIO_PCI_INTX_IRQ_INDEX ? (VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED)
                                                      : VFIO_IRQ_INFO_NORESIZE;
  copy_out(arg, info, minsz);
  return 0;
}

Result<long> PciDevice::set_irqs(unsigned long arg) {
  vfio_irq_set hdr;
  const size_t minsz = offsetofend(vfio_irq_set, count);
  NV2PT_TRY(copy_in(arg, hdr, minsz));
  std::lock_guard lock(state_->mutex);
  // vfio_set_irqs_validate_and_prepare, with the bounds that CVE-2016-9083/9084 added: count cannot wrap past
  // start, and count * element size is computed in 64 bits against argsz.
  const uint32_t allowed = VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_ACTION_TYPE_MASK;
  if (hdr.argsz < minsz || hdr.index >= VFIO_PCI_NUM_IRQS || hdr.count >= UINT32_MAX - hdr.start ||
      (hdr.flags & ~allowed))
    return fail(kEINVAL);
  const uint32_t vectors = irq_count(hdr.index);
  if (hdr.start >= vectors || hdr.start + hdr.count > vectors) {
    // Disabling with count 0 is allowed on any index that exists.
    if (!(hdr.count == 0 && (hdr.flags & VFIO_IRQ_SET_DATA_NONE) && vectors)) return fail(kEINVAL);
  }
  uint64_t element = 0;
  switch (hdr.flags & VFIO_IRQ_SET_DATA_TYPE_MASK) {
    case VFIO_IRQ_SET_DATA_NONE: element = 0; break;
    case VFIO_IRQ_SET_DATA_BOOL: element = 1; break;
    case VFIO_IRQ_SET_DATA_EVENTFD: element = 4; break;
    default: return fail(kEINVAL);
  }
  if (element && uint64_t{hdr.argsz} - minsz < uint64_t{hdr.count} * element) return fail(kEINVAL);
  const auto* data = reinterpret_cast<const uint8_t*>(arg) + minsz;
  State::IrqState& irq = state_->irqs[hdr.index];
  const uint32_t action = hdr.flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
  const bool intx = hdr.index == VFIO_PCI_INTX_IRQ_INDEX;
  if (action == VFIO_IRQ_SET_ACTION_MASK || action == VFIO_IRQ_SET_ACTION_UNMASK) {
    if (!intx) return fail(kENOTTY);  // only INTx can be masked through vfio-pci
    // vfio_pci_set_intx_mask/unmask take exactly vector 0; with count 0 the BOOL below would be read past argsz.
    if (hdr.start != 0 || hdr.count != 1) return fail(kEINVAL);
    if (irq.fds.empty()) return 0;
    bool set = true;
    if (element == 1) set = data[0];
    if (element == 4) return fail(kEINVAL);  // masking through an eventfd (irqfd) needs KVM
    if (set) irq.masked = action == VFIO_IRQ_SET_ACTION_MASK;
    return 0;
  }
  if (action != VFIO_IRQ_SET_ACTION_TRIGGER) return fail(kENOTTY);
  if (hdr.count == 0 && element == 0) {  // disable the index
    state_->close_irqs(hdr.index);
    return 0;
  }
  if (element == 4) {
    if (irq.fds.size() < hdr.start + hdr.count) irq.fds.resize(hdr.start + hdr.count, -1);
    for (uint32_t i = 0; i < hdr.count; ++i) {
      int32_t fd;
      std::memcpy(&fd, data + 4 * i, 4);
      int& slot = irq.fds[hdr.start + i];
      if (slot >= 0) ::close(slot);
      slot = -1;
      if (fd >= 0) {
        slot = dup_eventfd(fd);
        if (slot < 0) return fail(kEINVAL);  // not an fd: the kernel's eventfd_ctx_fdget fails
      }
    }
    if (intx) irq.masked = false;
    return 0;
  }
  // DATA_NONE / DATA_BOOL with TRIGGER: fire the vectors (loopback test of the user's handlers).
  for (uint32_t i = 0; i < hdr.count; ++i) {
    if (element == 1 && !data[i]) continue;
    const uint32_t v = hdr.start + i;
    if (v < irq.fds.size() && irq.fds[v] >= 0) {
      const uint64_t one = 1;
      (void)!::write(irq.fds[v], &one, sizeof(one));
    }
  }
  return 0;
}

Result<long> PciDevice::get_hot_reset_info(unsigned long arg) {
  vfio_pci_hot_reset_info hdr;
  const size_t minsz = offsetofend(vfio_pci_hot_reset_info, count);
  NV2PT_TRY(copy_in(arg, hdr, minsz));
  if (hdr.argsz < minsz) return fail(kEINVAL);
  hdr.flags = 0;
  std::vector<const platform::PciFunction*> affected = NV2PT_TRY(reset_scope());
  if (hdr.argsz < sizeof(hdr) + affected.size() * sizeof(vfio_pci_dependent_device)) {
    // The kernel writes the count back and fails with ENOSPC; the client retries with room for them.
    hdr.count = static_cast<uint32_t>(affected.size());
    copy_out(arg, hdr, minsz);
    return fail(kENOSPC);
  }
  auto* devices = reinterpret_cast<vfio_pci_dependent_device*>(reinterpret_cast<char*>(arg) + minsz);
  for (size_t i = 0; i < affected.size(); ++i) {
    vfio_pci_dependent_device d{};
    d.group_id = affected[i]->iommu_group.value_or(0);
    d.segment = static_cast<uint16_t>(affected[i]->address.domain);
    d.bus = affected[i]->address.bus;
    d.devfn = static_cast<uint8_t>(affected[i]->address.device << 3 | affected[i]->address.function);
    std::memcpy(&devices[i], &d, sizeof(d));
  }
  hdr.count = static_cast<uint32_t>(affected.size());
  copy_out(arg, hdr, minsz);
  return 0;
}

Result<std::vector<const platform::PciFunction*>> PciDevice::reset_scope() const {
  // A secondary bus reset of the bus the function sits on. The NPU's bridges sit on the PHB's root bus, which has
  // no bridge to reset it: ENODEV, as pci_probe_reset_bus fails there.
  if (function_.kind == platform::PciFunctionKind::kNvlinkBridge) return fail(kENODEV);
  std::vector<const platform::PciFunction*> affected;
  for (const platform::PciFunction& f : machine_.pci_functions()) {
    if (f.address.domain == address_.domain && f.address.bus == address_.bus) affected.push_back(&f);
  }
  return affected;
}

Result<void> PciDevice::hot_reset(const vfio_pci_hot_reset& request, std::span<Group* const> groups) {
  if (request.argsz < offsetofend(vfio_pci_hot_reset, count) || request.flags) return fail(kEINVAL);
  std::vector<const platform::PciFunction*> affected = NV2PT_TRY(reset_scope());
  if (request.count == 0 || request.count > affected.size() || groups.size() != request.count) return fail(kEINVAL);
  // The user must own every group the reset touches.
  for (const platform::PciFunction* f : affected) {
    const bool owned = std::any_of(groups.begin(), groups.end(), [&](Group* g) {
      return g && f->iommu_group && static_cast<uint32_t>(g->id()) == *f->iommu_group;
    });
    if (!owned) return fail(kEINVAL);
  }
  std::lock_guard lock(state_->mutex);
  reset_function(platform::PciDeviceModel::ResetKind::kHot);
  return {};
}

void PciDevice::reset_function(platform::PciDeviceModel::ResetKind kind) {
  model().reset(kind);
  state_->config.after_reset();
  update_bar_mappings();
}

void PciDevice::update_bar_mappings() {
  const bool decoded = state_->config.memory_enabled();
  for (State::Mapping& m : state_->mappings) {
    if (m.region > static_cast<int>(VFIO_PCI_BAR5_REGION_INDEX) || m.revoked || m.decoded == decoded) continue;
    // Same address, same length: the user's pointer stays valid, only what backs it changes.
    const int fd = decoded ? model().bar_fd(m.region) : empty_memfd();
    void* p = ::mmap(reinterpret_cast<void*>(m.ua), m.length, m.prot, MAP_SHARED | MAP_FIXED, fd,
                     decoded ? static_cast<off_t>(m.pos) : 0);
    if (p != MAP_FAILED) m.decoded = decoded;
  }
}

// --- read / write / mmap ---

Result<size_t> PciDevice::read(std::span<std::byte> out, uint64_t offset) {
  return access(out.data(), out.size(), offset, /*write=*/false);
}

Result<size_t> PciDevice::write(std::span<const std::byte> in, uint64_t offset) {
  return access(const_cast<std::byte*>(in.data()), in.size(), offset, /*write=*/true);
}

Result<size_t> PciDevice::access(std::byte* buf, size_t count, uint64_t offset, bool write) {
  const uint64_t index = offset >> kRegionShift;
  const uint64_t pos = offset & kRegionMask;
  std::lock_guard lock(state_->mutex);
  if (index == VFIO_PCI_CONFIG_REGION_INDEX) {
    if (!write) return state_->config.read({buf, count}, pos);
    auto written = state_->config.write({buf, count}, pos);
    update_bar_mappings();  // the command register (or an FLR) may have switched memory decode
    return written;
  }
  if (index <= VFIO_PCI_BAR5_REGION_INDEX) {
    const platform::PciDeviceModel::Bar bar = model().bar(static_cast<int>(index));
    if (!bar.size || pos >= bar.size) return fail(kEINVAL);
    // Memory decode off: the access must not reach the device (CVE-2020-12888).
    if (!state_->config.memory_enabled()) return fail(kEIO);
    count = std::min<uint64_t>(count, bar.size - pos);
    if (write) {
      NV2PT_TRY(model().bar_write(static_cast<int>(index), pos, {buf, count}));
    } else {
      NV2PT_TRY(model().bar_read(static_cast<int>(index), pos, {buf, count}));
    }
    return count;
  }
  if (index == VFIO_PCI_ROM_REGION_INDEX) {
    if (write) return fail(kEINVAL);
    const uint64_t size = model().rom_size();
    if (pos >= size) return fail(kEINVAL);
    count = std::min<uint64_t>(count, size - pos);
    NV2PT_TRY(model().rom_read(pos, {buf, count}));
    return count;
  }
  if (index == VFIO_PCI_VGA_REGION_INDEX) return fail(kEINVAL);
  if (count == 0) return 0;
  if (index >= VFIO_PCI_NUM_REGIONS + state_->extra.size()) return fail(kEINVAL);
  ExtraRegion& region = *state_->extra[index - VFIO_PCI_NUM_REGIONS];
  return write ? region.write({buf, count}, pos) : region.read({buf, count}, pos);
}

Result<void*> PciDevice::mmap(mm::AddressSpace& caller, void* addr, size_t length, int prot, int flags,
                              uint64_t offset) {
  const uint64_t index = offset >> kRegionShift;
  const uint64_t pos = offset & kRegionMask;
  std::lock_guard lock(state_->mutex);
  if (!(flags & MAP_SHARED)) return fail(kEINVAL);
  if (length == 0) return fail(kEINVAL);
  void* fixed = (flags & MAP_FIXED) ? addr : nullptr;
  void* mapping = nullptr;
  if (index <= VFIO_PCI_BAR5_REGION_INDEX) {
    const platform::PciDeviceModel::Bar bar = model().bar(static_cast<int>(index));
    const int fd = model().bar_fd(static_cast<int>(index));
    auto end = checked_add(pos, length);
    if (!bar.size || !bar.mmappable || fd < 0 || !end || *end > bar.size) return fail(kEINVAL);
    // With memory decode off the mapping is made but does not reach the device until decode is turned on.
    const bool decoded = state_->config.memory_enabled();
    mapping = ::mmap(fixed, length, prot, MAP_SHARED | (fixed ? MAP_FIXED : 0), decoded ? fd : empty_memfd(),
                     decoded ? static_cast<off_t>(pos) : 0);
    if (mapping == MAP_FAILED) return fail(Errno{errno});
    (void)caller.pinner().add_special_mapping(reinterpret_cast<uint64_t>(mapping), length);
    state_->mappings.push_back({&caller, reinterpret_cast<uint64_t>(mapping), length, static_cast<int>(index), pos,
                                prot, decoded});
    return mapping;
  } else if (index < VFIO_PCI_NUM_REGIONS) {
    return fail(kEINVAL);
  } else {
    if (index >= VFIO_PCI_NUM_REGIONS + state_->extra.size()) return fail(kEINVAL);  // vfio_pci_mmap's April 2021 bound
    ExtraRegion& region = *state_->extra[index - VFIO_PCI_NUM_REGIONS];
    if (!(region.flags() & VFIO_REGION_INFO_FLAG_MMAP)) return fail(kEINVAL);
    mapping = NV2PT_TRY(region.mmap(caller, fixed, length, prot, pos >> 16));
  }
  state_->mappings.push_back({&caller, reinterpret_cast<uint64_t>(mapping), length, static_cast<int>(index), 0, prot});
  return mapping;
}

void PciDevice::munmap(void* addr, size_t length) {
  std::lock_guard lock(state_->mutex);
  const uint64_t ua = reinterpret_cast<uint64_t>(addr);
  for (auto it = state_->mappings.begin(); it != state_->mappings.end();) {
    if (!ranges_overlap(it->ua, it->length, ua, length)) {
      ++it;
      continue;
    }
    if (it->region >= static_cast<int>(VFIO_PCI_NUM_REGIONS) && !it->revoked) {
      const size_t i = it->region - VFIO_PCI_NUM_REGIONS;
      if (i < state_->extra.size()) state_->extra[i]->munmap(reinterpret_cast<void*>(it->ua), it->length);
    } else {
      (void)it->as->pinner().remove_special_mapping(it->ua, it->length);
    }
    it = state_->mappings.erase(it);
  }
}

bool PciDevice::owns_mapping(const void* addr, size_t length) const {
  std::lock_guard lock(state_->mutex);
  const uint64_t ua = reinterpret_cast<uint64_t>(addr);
  return std::any_of(state_->mappings.begin(), state_->mappings.end(),
                     [&](const State::Mapping& m) { return ranges_overlap(m.ua, m.length, ua, length); });
}

}  // namespace nv2pt::vfio
