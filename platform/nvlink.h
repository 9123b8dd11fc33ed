// NVLink2 encodings shared by firmware, kernel and guest.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace nv2pt::platform {

// The "Coral mode" compressed address of a GPU window (ibm,device-tgt-addr, the SSATGT capability): bits 0..42
// kept, bits 45-46 moved to 43-44, bits 49-50 moved to 45-46. 0x2400_0000_0000 -> 0x0c00_0000_0000.
constexpr uint64_t compressed_tgt(uint64_t window_base) {
  constexpr uint64_t kLow43 = (uint64_t{1} << 43) - 1;
  return (window_base & kLow43) | ((window_base >> 45) & 0x3) << 43 | ((window_base >> 49) & 0x3) << 45;
}

// ibm,nvlink-speed / LNKSPD values: 0x3 "20 Gbps", 0x8 "25.78125 Gbps", 0x9 "25.0 Gbps"; nullopt otherwise.
constexpr std::optional<std::string_view> nvlink_speed_name(uint32_t speed) {
  switch (speed) {
    case 0x3: return "20 Gbps";
    case 0x8: return "25.78125 Gbps";
    case 0x9: return "25.0 Gbps";
    default: return std::nullopt;
  }
}

}  // namespace nv2pt::platform
