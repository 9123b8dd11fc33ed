// A PCI host bridge: a PCIe PHB4 (holds the GPUs) or an NPU2 PHB (holds the emulated NVLink bridges).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace nv2pt::platform {

enum class PhbKind {
  kPcie,  // compatible "ibm,power9-pciex"
  kNpu,   // compatible "ibm,power9-npu-pciex"
};

struct Phb {
  int node;
  PhbKind kind;
  uint32_t domain;                        // ibm,opal-phbid: the PCI domain Linux gives the PHB
  std::optional<uint32_t> chip_id;        // ibm,chip-id
  std::vector<uint32_t> tce_page_shifts;  // ibm,supported-tce-sizes (empty if absent)
  std::vector<uint64_t> atsd;             // ibm,mmio-atsd, NPU only; one entry per ATSD block, may be empty
};

}  // namespace nv2pt::platform
