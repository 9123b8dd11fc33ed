// A PCI function address as Linux prints it: domain:bus:device.function ("0004:04:00.0").
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace nv2pt::platform {

struct PciAddress {
  uint32_t domain = 0;  // the PHB's ibm,opal-phbid; Linux prints at least 4 hex digits
  uint8_t bus = 0;
  uint8_t device = 0;    // 0..31
  uint8_t function = 0;  // 0..7

  // "0004:04:00.0" (lower-case hex, as lspci and sysfs print it); nullopt for anything else.
  static std::optional<PciAddress> parse(std::string_view text);

  // From the first cell of a PCI "reg" property: bus << 16 | device << 11 | function << 8.
  static PciAddress from_phys_hi(uint32_t domain, uint32_t phys_hi);

  // bus << 8 | device << 3 | function, the routing id OPAL calls take.
  uint16_t bdfn() const { return static_cast<uint16_t>(bus << 8 | device << 3 | function); }

  std::string to_string() const;

  auto operator<=>(const PciAddress&) const = default;
};

}  // namespace nv2pt::platform
