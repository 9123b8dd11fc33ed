// A GPU's coherent memory window: the memory@ node skiboot creates per GPU ("ibm,coherent-device-memory").
#pragma once

#include <cstdint>
#include <optional>

#include "platform/memory_range.h"

namespace nv2pt::platform {

struct GpuMemory {
  int node;
  // reg = <base size>; nullopt when reg is not exactly two u64 cells (only a machine loaded without validation
  // has such a node; the vfio layer then fails the GPU open as the kernel does).
  std::optional<MemoryRange> window;
  // nv2pt,real-memory-size: the RAM behind the window (16 GiB on a V100 SXM2 16GB); accesses above it are
  // HMIs. Without the property the whole window counts as real.
  std::optional<uint64_t> real_size;
  std::optional<uint32_t> chip_id;           // ibm,chip-id, the fake id (255 counting down)
  std::optional<uint32_t> associativity_id;  // the last cell of ibm,associativity: the NUMA node
};

}  // namespace nv2pt::platform
