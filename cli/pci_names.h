// The few PCI names `nv2pt lspci` needs, worded as pciutils' pci.ids has them.
#pragma once

#include <cstdint>
#include <string>

namespace nv2pt::cli {

// "3D" for 0x0302, "Bridge" for 0x0680; "Class xxxx" otherwise.
std::string pci_class_name(uint16_t class_id);
// "NVIDIA Corporation", "IBM"; "Vendor xxxx" otherwise.
std::string pci_vendor_name(uint16_t vendor_id);
// "GV100GL [Tesla V100 SXM2]" for 10de:1db1; "Device xxxx" otherwise (as lspci prints unknown devices).
std::string pci_device_name(uint16_t vendor_id, uint16_t device_id);

}  // namespace nv2pt::cli
