// One PCI function of the machine, as lspci and sysfs see it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "platform/pci_address.h"

namespace nv2pt::platform {

enum class PciFunctionKind {
  kGpu,           // an NVIDIA 3D controller or a function with ibm,npu, on a PCIe PHB; see Machine::gpus()
  kNvlinkBridge,  // a function of an NPU PHB; see Machine::bridges()
  kOther,
};

struct PciFunction {
  PciAddress address;
  int node;
  size_t phb;  // index into Machine::phbs()
  uint16_t vendor_id;
  uint16_t device_id;
  uint8_t revision;                   // revision-id (0 if absent)
  uint32_t class_code;                // class-code, 24 bits: class << 16 | subclass << 8 | prog-if
  std::optional<uint32_t> iommu_group;  // nv2pt,iommu-group
  std::string loc_code;               // ibm,loc-code ("" if absent)
  PciFunctionKind kind;
  size_t role_index;  // index into Machine::gpus() or Machine::bridges() for those kinds

  uint16_t class_id() const { return static_cast<uint16_t>(class_code >> 8); }  // 0x0302, 0x0680
};

}  // namespace nv2pt::platform
