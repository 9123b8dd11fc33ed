// vfio-pci's view of a device's configuration space (vfio_pci_config.c, reduced to what matters here): the BARs,
// the ROM BAR, the interrupt line and the MSI/MSI-X capabilities are virtual (the user's writes never reach the
// device); the command register is tracked (memory decode gates BAR access, CVE-2020-12888) and passed through;
// an FLR requested in the PCIe Device Control register resets the function; everything else, vendor-specific
// capabilities included (the NVLink2 procedure interface), passes through to the device.
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "base/errno.h"
#include "platform/pci_device_model.h"

namespace nv2pt::vfio {

class PciConfig {
 public:
  explicit PciConfig(platform::PciDeviceModel& model);

  // Device enable: virtual registers start from the device's own values.
  void reset_virtual_state();

  uint32_t size() const { return model_.config_size(); }
  // Any length and alignment; clipped at the end. EINVAL for pos >= size.
  Result<size_t> read(std::span<std::byte> out, uint64_t pos);
  Result<size_t> write(std::span<const std::byte> in, uint64_t pos);

  bool memory_enabled() const { return command_ & 0x2; }
  uint8_t interrupt_pin() const;
  bool is_pcie() const { return pcie_cap_ != 0; }
  uint32_t msi_vectors() const;
  uint32_t msix_vectors() const;
  // Called after the model was reset: virtual BARs and the command register go back to their reset values.
  void after_reset();

 private:
  uint32_t read_dword(uint32_t offset);
  void write_piece(uint32_t offset, unsigned size, uint32_t value);
  bool is_virtual(uint32_t offset) const;

  platform::PciDeviceModel& model_;
  uint16_t command_ = 0;
  std::array<uint32_t, 6> bars_{};
  uint32_t rom_ = 0;
  uint8_t interrupt_line_ = 0;
  uint8_t msi_cap_ = 0, msix_cap_ = 0, pcie_cap_ = 0;
  uint8_t msi_len_ = 0, msix_len_ = 12;
  std::array<uint8_t, 256> virtual_caps_{};  // contents of the virtualised MSI/MSI-X capability bytes
};

}  // namespace nv2pt::vfio
