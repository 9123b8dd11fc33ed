// A range of host physical addresses.
#pragma once

#include <cstdint>

namespace nv2pt::platform {

struct MemoryRange {
  uint64_t base = 0;
  uint64_t size = 0;  // the machine only holds ranges whose base + size does not wrap

  uint64_t end() const { return base + size; }  // exclusive
  bool contains(uint64_t address) const { return address >= base && address - base < size; }
  bool operator==(const MemoryRange&) const = default;
};

}  // namespace nv2pt::platform
