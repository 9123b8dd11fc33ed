// An NVIDIA GPU: a PCI function on a PCIe PHB, with its NVLink bridges and its memory window.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "platform/pci_address.h"

namespace nv2pt::platform {

struct Gpu {
  size_t function;  // index into Machine::pci_functions()
  PciAddress address;
  int node;
  // ibm,npu, in property order (entry k is the kernel's "NPU #k"); only entries that resolve to bridges.
  std::vector<size_t> bridges;   // indexes into Machine::bridges()
  std::optional<size_t> memory;  // index into Machine::gpu_memories(), found through the bridges' memory-region
  std::optional<uint64_t> tgt;   // ibm,device-tgt-addr of NPU #0
};

}  // namespace nv2pt::platform
