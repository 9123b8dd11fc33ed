#include "platform/pci_address.h"

#include <fmt/format.h>

#include <cctype>
#include <charconv>

namespace nv2pt::platform {

namespace {

// Exactly `digits` hex digits (or, for the domain, 4 to 8) at the front of `text`; advances it.
std::optional<uint32_t> take_hex(std::string_view& text, size_t min_digits, size_t max_digits) {
  size_t n = 0;
  while (n < text.size() && n < max_digits && std::isxdigit(static_cast<unsigned char>(text[n]))) ++n;
  if (n < min_digits) return std::nullopt;
  uint32_t value = 0;
  std::from_chars(text.data(), text.data() + n, value, 16);
  text.remove_prefix(n);
  return value;
}

bool take_char(std::string_view& text, char c) {
  if (text.empty() || text.front() != c) return false;
  text.remove_prefix(1);
  return true;
}

}  // namespace

std::optional<PciAddress> PciAddress::parse(std::string_view text) {
  auto domain = take_hex(text, 4, 8);
  if (!domain || !take_char(text, ':')) return std::nullopt;
  auto bus = take_hex(text, 2, 2);
  if (!bus || !take_char(text, ':')) return std::nullopt;
  auto device = take_hex(text, 2, 2);
  if (!device || *device > 31 || !take_char(text, '.')) return std::nullopt;
  auto function = take_hex(text, 1, 1);
  if (!function || *function > 7 || !text.empty()) return std::nullopt;
  return PciAddress{*domain, static_cast<uint8_t>(*bus), static_cast<uint8_t>(*device),
                    static_cast<uint8_t>(*function)};
}

PciAddress PciAddress::from_phys_hi(uint32_t domain, uint32_t phys_hi) {
  return PciAddress{domain, static_cast<uint8_t>(phys_hi >> 16), static_cast<uint8_t>((phys_hi >> 11) & 0x1f),
                    static_cast<uint8_t>((phys_hi >> 8) & 0x7)};
}

std::string PciAddress::to_string() const {
  return fmt::format("{:04x}:{:02x}:{:02x}.{:x}", domain, bus, device, function);
}

}  // namespace nv2pt::platform
