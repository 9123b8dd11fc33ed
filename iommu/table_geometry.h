// Geometry and accounting of a multi-level TCE table, with the kernel's own rules (pnv_pci_ioda2_table_alloc_pages
// and pnv_ioda2_get_table_size, v5.x). Both the TCE engine and `nv2pt plan` take their numbers from here.
#pragma once

#include <cstdint>

#include "base/errno.h"

namespace nv2pt::iommu {

inline constexpr unsigned kMaxLevels = 5;
// The kernel's table blocks are at least one 64 KiB host page.
inline constexpr unsigned kMinBlockShift = 16;
// Indirect levels can only address below 2^55 bytes of bus space.
inline constexpr unsigned kAddressableShiftLimit = 55;
// Largest physically contiguous allocation of the modelled kernel (order 8 with 64 KiB pages); a parameter because
// it depends on CONFIG_FORCE_MAX_ZONEORDER.
inline constexpr uint64_t kDefaultMaxAllocBytes = 16ull << 20;

struct TableGeometry {
  unsigned page_shift = 0;     // IOMMU page shift
  uint64_t window_size = 0;    // bytes of bus space, a power of two
  unsigned levels = 0;         // 1..5
  unsigned entries_shift = 0;  // log2(window / IOMMU page)
  unsigned table_shift = 0;    // log2 of the whole table in bytes, at least 16 (so tiny windows are widened)
  unsigned block_shift = 0;    // log2 of one level block in bytes, at least 16
  unsigned level_bits = 0;     // index bits one level resolves = block_shift - 3

  // Number of entries the table holds (table bytes / 8); may exceed the window's pages
  // (docs/kernel/tce-tables.md#small-windows).
  uint64_t size() const { return (1ull << table_shift) >> 3; }
  uint64_t level_size() const { return 1ull << level_bits; }
  uint64_t block_bytes() const { return 1ull << block_shift; }
  uint64_t table_bytes() const { return 1ull << table_shift; }
  // Bus space the table really covers (larger than window_size for a widened small window).
  uint64_t effective_window() const { return size() << page_shift; }
  // Entries that one leaf block covers, and the bus bytes behind it.
  uint64_t entries_per_leaf() const { return levels == 1 ? size() : level_size(); }
};

// Validates and computes the geometry. EINVAL: levels outside 1..5, window not a power of two or smaller than one
// IOMMU page, or the 55-bit rule broken.
Result<TableGeometry> compute_geometry(unsigned page_shift, uint64_t window_size, unsigned levels);

// Whether the table's top block can be allocated under the largest-allocation limit (ENOMEM otherwise). A 1-level
// table is one block holding every entry.
Result<void> check_allocatable(const TableGeometry& g, uint64_t max_alloc_bytes);

// Bytes charged to locked memory for a VFIO table: every level of the hardware table plus the user-address cache
// (pnv_ioda2_get_table_size, v5.x). 0 for invalid arguments, as in the kernel (callers turn it into EINVAL).
uint64_t accounting_bytes(unsigned page_shift, uint64_t window_size, unsigned levels);

// Bytes a flat (1-level) table needs to cover bus space up to `end` exactly, ignoring the power-of-two rule:
// (end / page) * 8, the arithmetic of commit a68bd1267b72.
uint64_t exact_fit_flat_bytes(uint64_t end, unsigned page_shift);

// Smallest power of two >= v (0 if it does not fit in 64 bits).
uint64_t round_up_pow2(uint64_t v);

}  // namespace nv2pt::iommu
