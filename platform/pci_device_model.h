// The hardware side of one PCI function: its raw configuration space, BARs and resets, as a device presents them
// on the bus. vfio-pci (vfio/) virtualises parts of this for the user, exactly as the kernel does with real devices.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "base/errno.h"
#include "platform/pci_address.h"

namespace nv2pt::platform {

inline constexpr int kPciBarCount = 6;

class PciDeviceModel {
 public:
  struct Bar {
    uint64_t size = 0;        // 0: BAR not implemented
    bool mem64 = false;       // 64-bit memory BAR (uses the next BAR register too)
    bool prefetchable = false;
    bool mmappable = true;    // whether vfio-pci may offer it for mmap (a memfd backs it)
  };
  enum class ResetKind { kFunctionLevel, kHot };

  explicit PciDeviceModel(PciAddress address) : address_(address) {}
  virtual ~PciDeviceModel() = default;
  PciDeviceModel(const PciDeviceModel&) = delete;
  PciDeviceModel& operator=(const PciDeviceModel&) = delete;

  const PciAddress& address() const { return address_; }

  // Raw configuration space: 4096 bytes for PCIe functions. `size` is 1, 2 or 4, `offset + size` within
  // config_size(), naturally aligned (callers guarantee it). Hardware semantics: read-only fields ignore writes,
  // BAR registers return their size masks after all-ones writes, RW1C bits clear, and so on.
  virtual uint32_t config_size() const { return 4096; }
  virtual uint32_t config_read(uint32_t offset, unsigned size) = 0;
  virtual void config_write(uint32_t offset, unsigned size, uint32_t value) = 0;

  virtual Bar bar(int index) const = 0;  // index 0..5
  virtual uint64_t rom_size() const { return 0; }
  // MMIO through the BAR (pread/pwrite path). EINVAL if [offset, offset + len) leaves the BAR.
  virtual Result<void> bar_read(int index, uint64_t offset, std::span<std::byte> out) = 0;
  virtual Result<void> bar_write(int index, uint64_t offset, std::span<const std::byte> in) = 0;
  // The memfd backing a mmappable BAR (its size is the BAR size), -1 otherwise. Owned by the model.
  virtual int bar_fd(int index) const = 0;
  // Expansion ROM contents (rom_size() bytes), read through the ROM region.
  virtual Result<void> rom_read(uint64_t offset, std::span<std::byte> out) {
    (void)offset;
    (void)out;
    return fail(kEINVAL);
  }

  // Whether the function advertises Function Level Reset in its PCIe device capabilities.
  virtual bool has_flr() const = 0;
  virtual void reset(ResetKind kind) = 0;

 private:
  PciAddress address_;
};

}  // namespace nv2pt::platform
