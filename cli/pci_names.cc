#include "cli/pci_names.h"

#include <fmt/format.h>

namespace nv2pt::cli {

std::string pci_class_name(uint16_t class_id) {
  switch (class_id) {
    case 0x0300: return "VGA compatible controller";
    case 0x0302: return "3D";  // lspci's short name for "3D controller"
    case 0x0604: return "PCI bridge";
    case 0x0680: return "Bridge";
    default: return fmt::format("Class {:04x}", class_id);
  }
}

std::string pci_vendor_name(uint16_t vendor_id) {
  switch (vendor_id) {
    case 0x10de: return "NVIDIA Corporation";
    case 0x1014: return "IBM";
    default: return fmt::format("Vendor {:04x}", vendor_id);
  }
}

std::string pci_device_name(uint16_t vendor_id, uint16_t device_id) {
  if (vendor_id == 0x10de && device_id == 0x1db1) return "GV100GL [Tesla V100 SXM2]";  // as the seed lists it
  if (vendor_id == 0x10de && device_id == 0x1db5) return "GV100GL [Tesla V100 SXM2 32GB]";
  // IBM 04ea (the NPU2 NVLink bridge) has no name in pci.ids, hence the seed's "IBM Device 04ea".
  return fmt::format("Device {:04x}", device_id);
}

}  // namespace nv2pt::cli
