// A raw PCI configuration space as hardware keeps it: bytes, plus per-bit write and write-1-to-clear masks. The
// device models build their headers and capabilities with it and trap the few registers that do more than store
// (BARs, procedure registers, resets) themselves.
#pragma once

#include <array>
#include <cstdint>

namespace nv2pt::platform {

class ConfigSpace {
 public:
  static constexpr uint32_t kSize = 4096;

  // Sets `size` (1, 2 or 4) bytes at `offset` to `value` (little-endian, as on the bus), with `writable` the bits a
  // write may change and `w1c` the bits a write of 1 clears. Offsets beyond the space are ignored.
  void init(uint32_t offset, unsigned size, uint32_t value, uint32_t writable = 0, uint32_t w1c = 0);

  // Hardware semantics: read-only bits keep their value, writable bits take the new one, RW1C bits clear where
  // the value has a 1. Out-of-range accesses read as all-ones and drop writes, like a master abort.
  uint32_t read(uint32_t offset, unsigned size) const;
  void write(uint32_t offset, unsigned size, uint32_t value);

  // Raw store that ignores the masks (the device's own updates: status bits, link flags).
  void set(uint32_t offset, unsigned size, uint32_t value);

  // Appends a standard capability to the list: links the previous `next` byte (or 0x34) to `offset` and writes
  // the id with a zero next pointer.
  void add_capability(uint32_t offset, uint8_t id);
  // Appends a PCIe extended capability header at `offset` (0x100 first).
  void add_extended_capability(uint32_t offset, uint16_t id, uint8_t version);

 private:
  static bool in_range(uint32_t offset, unsigned size) { return offset < kSize && size <= kSize - offset; }

  std::array<uint8_t, kSize> value_{};
  std::array<uint8_t, kSize> writable_{};
  std::array<uint8_t, kSize> w1c_{};
  uint32_t last_cap_next_ = 0x34;  // where the next capability's offset goes
  uint32_t last_ext_cap_ = 0;      // 0: no extended capability yet
};

}  // namespace nv2pt::platform
