// The six BAR registers of a type-0 header with the standard sizing behaviour: address bits below the BAR size
// and the flag bits are read-only, so writing all-ones and reading back gives the size mask (~(size - 1) | flags),
// and a 64-bit BAR's upper register holds the high half of the mask.
#pragma once

#include <array>
#include <cstdint>

#include "platform/pci_device_model.h"

namespace nv2pt::platform {

class BarRegisters {
 public:
  BarRegisters() = default;
  explicit BarRegisters(const std::array<PciDeviceModel::Bar, kPciBarCount>& bars) : bars_(bars) {}

  static constexpr uint32_t kFirst = 0x10;
  static constexpr uint32_t kEnd = 0x28;
  static bool covers(uint32_t offset) { return offset >= kFirst && offset < kEnd; }

  // Byte-granular access to [0x10, 0x28); the caller checks covers() for every byte it passes.
  uint32_t read(uint32_t offset, unsigned size) const;
  void write(uint32_t offset, unsigned size, uint32_t value);

  // Back to power-on: every address 0.
  void clear() { regs_.fill(0); }
  const PciDeviceModel::Bar& bar(int index) const { return bars_[static_cast<size_t>(index)]; }

 private:
  uint32_t reg_value(int index) const;
  void reg_store(int index, uint32_t value);

  std::array<PciDeviceModel::Bar, kPciBarCount> bars_{};
  std::array<uint32_t, kPciBarCount> regs_{};  // the address bits written, masked on read
};

}  // namespace nv2pt::platform
