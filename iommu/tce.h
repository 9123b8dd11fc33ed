// The TCE ("translation control entry") format of POWER IOMMUs: a big-endian 64-bit word holding the host physical
// address of one IOMMU page and two permission bits.
#pragma once

#include <bit>
#include <cstdint>

namespace nv2pt::iommu {

inline constexpr uint64_t kTceRead = 0x1;   // the device may read memory
inline constexpr uint64_t kTceWrite = 0x2;  // the device may write memory
inline constexpr uint64_t kTcePermMask = kTceRead | kTceWrite;

// DMA direction as the kernel names it (enum dma_data_direction).
enum class DmaDirection : uint8_t { kBidirectional = 0, kToDevice = 1, kFromDevice = 2, kNone = 3 };

// Direction -> permission bits. W implies R on POWER: a from-device mapping is stored as R|W, which is why the old
// direction of an overwritten write-only TCE reads back as bidirectional.
constexpr uint64_t tce_permissions(DmaDirection dir) {
  switch (dir) {
    case DmaDirection::kToDevice: return kTceRead;
    case DmaDirection::kFromDevice:
    case DmaDirection::kBidirectional: return kTceRead | kTceWrite;
    case DmaDirection::kNone: return 0;
  }
  return 0;
}

constexpr DmaDirection tce_direction(uint64_t tce) {
  switch (tce & kTcePermMask) {
    case kTceRead | kTceWrite: return DmaDirection::kBidirectional;
    case kTceRead: return DmaDirection::kToDevice;
    case kTceWrite: return DmaDirection::kFromDevice;
    default: return DmaDirection::kNone;
  }
}

// Whether a mapping in this direction lets the device write the page (so the page must be marked dirty on unmap).
constexpr bool device_may_write(DmaDirection dir) {
  return dir == DmaDirection::kBidirectional || dir == DmaDirection::kFromDevice;
}

// Entries live in memory big-endian, as the PHB reads them.
constexpr uint64_t to_be(uint64_t v) {
  if constexpr (std::endian::native == std::endian::big) return v;
  return __builtin_bswap64(v);
}
constexpr uint64_t from_be(uint64_t v) { return to_be(v); }

}  // namespace nv2pt::iommu
