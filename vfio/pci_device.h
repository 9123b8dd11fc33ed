// A PCI function bound to vfio-pci, behind a device fd (vfio_pci*.c): device info, regions (BARs, ROM, config,
// VGA and the device-specific extra regions from index 9), IRQs through eventfds, resets, hot reset, and the
// virtualised configuration space.
//
// The device is enabled on the first open and disabled on the last close (the kernel's refcount): the NVLink2
// extra regions (GPU RAM on the GPU, ATSD on a bridge) are created at enable and released at disable.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/errno.h"
#include "mm/address_space.h"
#include "platform/hardware.h"
#include "platform/machine.h"
#include "vfio/uapi.h"

namespace nv2pt::vfio {

class Group;
class ExtraRegion;
class PciConfig;

class PciDevice {
 public:
  PciDevice(const platform::Machine& machine, platform::Hardware& hardware, const platform::PciFunction& function);
  ~PciDevice();
  PciDevice(const PciDevice&) = delete;
  PciDevice& operator=(const PciDevice&) = delete;

  const platform::PciAddress& address() const { return address_; }
  std::string name() const { return address_.to_string(); }  // what VFIO_GROUP_GET_DEVICE_FD takes

  // VFIO_GROUP_GET_DEVICE_FD's open: the first open enables the device (extra regions as vfio_pci_enable makes them: a
  // non-ENODEV error fails the open, docs/kernel/regions.md#enable-order). `caller` is the opening process; `kvm_lpid`
  // the guest the group belongs to, if KVM was added to it before this open (the GPU is then mapped to that LPID in the
  // NPU).
  Result<void> open(mm::AddressSpace& caller, std::optional<uint64_t> kvm_lpid = std::nullopt);
  // Device fd closed. The last close disables the device: regions released, IRQs torn down, the GPU RAM devmem
  // registration dropped.
  void release();
  int open_count() const;

  // Device fd ioctls (VFIO_DEVICE_*). VFIO_DEVICE_PCI_HOT_RESET needs the caller's group fds resolved: use
  // hot_reset() for it (ioctl gives ENOTTY for that number).
  Result<long> ioctl(mm::AddressSpace& caller, unsigned long cmd, unsigned long arg);
  // VFIO_DEVICE_PCI_HOT_RESET with the groups the user passed (by fd).
  Result<void> hot_reset(const vfio_pci_hot_reset& request, std::span<Group* const> groups);

  // pread/pwrite on the device fd: offset = region index << 40 | position.
  Result<size_t> read(std::span<std::byte> out, uint64_t offset);
  Result<size_t> write(std::span<const std::byte> in, uint64_t offset);
  // mmap on the device fd. Returns the mapping the user gets.
  Result<void*> mmap(mm::AddressSpace& caller, void* addr, size_t length, int prot, int flags, uint64_t offset);
  // The user unmapped [addr, addr + length) that overlaps a mapping this device made.
  void munmap(void* addr, size_t length);
  // Whether [addr, addr + length) overlaps a mapping this device handed out.
  bool owns_mapping(const void* addr, size_t length) const;

  // For the group: the host driver binding and reset scope.
  uint32_t iommu_group() const { return iommu_group_; }

  // For reports.
  std::vector<std::string> extra_region_names() const;
  // Whether VFIO_DEVICE_RESET works (FLR, or a bus reset of a function alone behind its port).
  bool reset_works() const;

 private:
  struct State;
  platform::PciDeviceModel& model() const;
  Result<long> get_info(unsigned long arg);
  Result<long> get_region_info(unsigned long arg);
  Result<long> get_irq_info(unsigned long arg);
  Result<long> set_irqs(unsigned long arg);
  Result<long> get_hot_reset_info(unsigned long arg);
  uint32_t irq_count(unsigned index) const;
  // The functions a hot reset of this one resets too (its bus); ENODEV where no bus reset exists.
  Result<std::vector<const platform::PciFunction*>> reset_scope() const;
  void reset_function(platform::PciDeviceModel::ResetKind kind);
  // Memory decode switched (command register, reset): BAR mmaps follow it, reaching the device only while it is
  // on (CVE-2020-12888). Called with the state's mutex held.
  void update_bar_mappings();
  // Device disable with mappings still in place: they stop reaching the device. Mutex held.
  void revoke_mappings();
  Result<size_t> access(std::byte* buf, size_t count, uint64_t offset, bool write);

  const platform::Machine& machine_;
  platform::Hardware& hardware_;
  const platform::PciFunction& function_;
  platform::PciAddress address_;
  uint32_t iommu_group_;
  std::unique_ptr<State> state_;
};

}  // namespace nv2pt::vfio
