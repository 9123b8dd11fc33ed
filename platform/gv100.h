// An NVIDIA V100 SXM2 (GV100GL, 10de:1db1 rev a1, class 0x030200 "3D controller") as it presents itself on the
// PCIe bus: its configuration space, its three memory BARs backed by sparse memfds, and BAR0 as a small register
// file. The sources of every value are noted beside it in gv100.cc.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "base/thread_annotations.h"
#include "platform/bar_registers.h"
#include "platform/config_space.h"
#include "platform/pci_device_model.h"
#include "platform/sparse_memfd.h"

namespace nv2pt::platform {

class Gv100 : public PciDeviceModel {
 public:
  struct Identity {
    uint16_t vendor_id = 0x10de;
    uint16_t device_id = 0x1db1;
    uint8_t revision = 0xa1;
    uint32_t class_code = 0x030200;
    uint16_t subsystem_vendor_id = 0x10de;
    uint16_t subsystem_id = 0x1212;
  };

  // Capability layout (standard list, then extended list).
  static constexpr uint32_t kPmCap = 0x60;
  static constexpr uint32_t kMsiCap = 0x68;
  static constexpr uint32_t kExpCap = 0x78;
  static constexpr uint32_t kVendorCap = 0xb4;
  static constexpr uint32_t kExtVirtualChannel = 0x100;
  static constexpr uint32_t kExtPowerBudgeting = 0x128;
  static constexpr uint32_t kExtAer = 0x420;
  static constexpr uint32_t kExtVendor = 0x600;

  static constexpr uint64_t kBar0Size = uint64_t{16} << 20;  // registers, 32-bit, non-prefetchable
  static constexpr uint64_t kBar1Size = uint64_t{16} << 30;  // framebuffer aperture, 64-bit, prefetchable
  static constexpr uint64_t kBar3Size = uint64_t{32} << 20;  // 64-bit, prefetchable

  // BAR0 registers the model gives a value to.
  static constexpr uint64_t kNvPmcBoot0 = 0x0;
  static constexpr uint32_t kBoot0Value = 0x140000a1;  // architecture/implementation 0x140 (GV100), rev a1

  // ENOMEM if a BAR memfd cannot be created.
  static Result<std::unique_ptr<Gv100>> create(PciAddress address, Identity identity);
  static Result<std::unique_ptr<Gv100>> create(PciAddress address);  // the default identity

  uint32_t config_read(uint32_t offset, unsigned size) override;
  void config_write(uint32_t offset, unsigned size, uint32_t value) override;
  Bar bar(int index) const override;
  Result<void> bar_read(int index, uint64_t offset, std::span<std::byte> out) override;
  Result<void> bar_write(int index, uint64_t offset, std::span<const std::byte> in) override;
  int bar_fd(int index) const override;
  bool has_flr() const override { return false; }
  // Both kinds put the function back to its power-on state (command, BARs, MSI, PM, device control cleared) and
  // then tell the listener: on the real machine a GPU reset drops its NVLinks.
  void reset(ResetKind kind) override;

  // Called (outside the model's lock) after every reset.
  void set_reset_listener(std::function<void()> listener);
  uint64_t reset_count() const;

 private:
  Gv100(PciAddress address, Identity identity);
  void init_config() NV2PT_REQUIRES(mutex_);

  const Identity identity_;
  mutable Mutex mutex_;
  ConfigSpace config_ NV2PT_GUARDED_BY(mutex_);
  BarRegisters bars_ NV2PT_GUARDED_BY(mutex_);
  std::function<void()> on_reset_ NV2PT_GUARDED_BY(mutex_);
  uint64_t resets_ NV2PT_GUARDED_BY(mutex_) = 0;
  SparseMemfd bar_memfd_[kPciBarCount];
};

}  // namespace nv2pt::platform
