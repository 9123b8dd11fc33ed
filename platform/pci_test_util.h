// Test helpers shared by the device-model tests: capability-list walks over a model's raw config space.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "platform/pci_device_model.h"

namespace nv2pt::platform::testing {

// (offset, id) of every standard capability, following the list from 0x34.
inline std::vector<std::pair<uint32_t, uint8_t>> capability_chain(PciDeviceModel& dev) {
  std::vector<std::pair<uint32_t, uint8_t>> caps;
  uint32_t next = dev.config_read(0x34, 1) & 0xfc;
  while (next != 0 && caps.size() < 48) {
    caps.emplace_back(next, static_cast<uint8_t>(dev.config_read(next, 1)));
    next = dev.config_read(next + 1, 1) & 0xfc;
  }
  return caps;
}

// (offset, id) of every extended capability from 0x100.
inline std::vector<std::pair<uint32_t, uint16_t>> extended_capability_chain(PciDeviceModel& dev) {
  std::vector<std::pair<uint32_t, uint16_t>> caps;
  if (dev.config_size() <= 0x100) return caps;
  uint32_t next = 0x100;
  while (next != 0 && caps.size() < 64) {
    const uint32_t header = dev.config_read(next, 4);
    if (header == 0) break;
    caps.emplace_back(next, static_cast<uint16_t>(header & 0xffff));
    next = header >> 20;
  }
  return caps;
}

// The size a BAR pair reports with Linux's algorithm (write all-ones, read, keep the lowest set address bit).
inline uint64_t probe_bar_size(PciDeviceModel& dev, int index) {
  const uint32_t reg = 0x10 + 4 * static_cast<uint32_t>(index);
  const uint32_t orig_lo = dev.config_read(reg, 4);
  const bool mem64 = (orig_lo & 0x6) == 0x4;
  dev.config_write(reg, 4, 0xffffffff);
  uint64_t sz = dev.config_read(reg, 4) & ~uint64_t{0xf};
  dev.config_write(reg, 4, orig_lo);
  if (mem64) {
    const uint32_t orig_hi = dev.config_read(reg + 4, 4);
    dev.config_write(reg + 4, 4, 0xffffffff);
    sz |= uint64_t{dev.config_read(reg + 4, 4)} << 32;
    dev.config_write(reg + 4, 4, orig_hi);
  } else {
    sz |= 0xffffffff00000000ull;
  }
  return sz & ~(sz - 1);
}

}  // namespace nv2pt::platform::testing
