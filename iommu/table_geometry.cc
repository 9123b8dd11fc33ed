#include "iommu/table_geometry.h"

#include <algorithm>
#include <bit>

namespace nv2pt::iommu {

Result<TableGeometry> compute_geometry(unsigned page_shift, uint64_t window_size, unsigned levels) {
  if (levels == 0 || levels > kMaxLevels) return fail(kEINVAL);
  if (!std::has_single_bit(window_size)) return fail(kEINVAL);
  const unsigned window_shift = std::countr_zero(window_size);
  if (page_shift < 12 || page_shift >= 64 || window_shift < page_shift) return fail(kEINVAL);

  TableGeometry g;
  g.page_shift = page_shift;
  g.window_size = window_size;
  g.levels = levels;
  g.entries_shift = window_shift - page_shift;
  g.table_shift = std::max(g.entries_shift + 3, kMinBlockShift);
  const unsigned bits_per_level = (g.entries_shift + levels - 1) / levels;
  g.block_shift = std::max(bits_per_level + 3, kMinBlockShift);
  g.level_bits = g.block_shift - 3;
  if (g.level_bits * levels + page_shift >= kAddressableShiftLimit) return fail(kEINVAL);
  return g;
}

Result<void> check_allocatable(const TableGeometry& g, uint64_t max_alloc_bytes) {
  if (g.block_bytes() > max_alloc_bytes) return fail(kENOMEM);
  return {};
}

uint64_t accounting_bytes(unsigned page_shift, uint64_t window_size, unsigned levels) {
  if (levels == 0 || levels > kMaxLevels || !std::has_single_bit(window_size)) return 0;
  const unsigned window_shift = std::countr_zero(window_size);
  if (window_shift < page_shift) return 0;
  const unsigned entries_shift = window_shift - page_shift;
  // Whole-table bytes saturate: a 2^64 table cannot be charged anyway and the limit check will refuse it.
  if (entries_shift + 3 >= 64) return 0;
  uint64_t level_bytes = std::max<uint64_t>(0x1000, 1ull << (entries_shift + 3));
  const unsigned block_shift = std::max((entries_shift + levels - 1) / levels + 3, kMinBlockShift);
  const uint64_t block = 1ull << block_shift;
  uint64_t sum = 0;
  for (unsigned l = 0; l < levels; ++l) {
    sum += (level_bytes + block - 1) & ~(block - 1);
    level_bytes = std::max<uint64_t>((level_bytes / block) * 8, block);
  }
  return 2 * sum;  // the hardware table and the user-address cache
}

uint64_t exact_fit_flat_bytes(uint64_t end, unsigned page_shift) { return (end >> page_shift) * 8; }

uint64_t round_up_pow2(uint64_t v) {
  if (v <= 1) return 1;
  if (v > (1ull << 63)) return 0;
  return std::bit_ceil(v);
}

}  // namespace nv2pt::iommu
