// An NVLink2 bridge: the emulated PCI device (IBM 1014:04ea) an NPU PHB shows for one link.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "platform/pci_address.h"

namespace nv2pt::platform {

struct NvlinkBridge {
  size_t function;  // index into Machine::pci_functions()
  PciAddress address;
  int node;
  size_t phb;                       // index into Machine::phbs()
  std::optional<size_t> gpu;        // ibm,gpu -> Machine::gpus()
  std::optional<size_t> memory;     // memory-region -> Machine::gpu_memories()
  std::optional<size_t> link;       // ibm,nvlink -> Machine::links()
  std::optional<uint64_t> tgt;      // ibm,device-tgt-addr
  std::optional<uint32_t> link_speed;  // ibm,nvlink-speed
};

}  // namespace nv2pt::platform
