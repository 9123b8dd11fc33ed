#include "bench/kernel_reference.h"

#include <cerrno>

namespace nv2pt::bench {
namespace {

// tce_iommu_prereg_ua_to_hpa: mm_iommu_lookup, then mm_iommu_ua_to_hpa.
long prereg_ua_to_hpa(const KernelRegionList& regions, uint64_t ua, unsigned shift, uint64_t* hpa,
                      KernelRegion** mem) {
  KernelRegion* r = regions.lookup(ua, uint64_t{1} << shift);
  if (!r) return -EINVAL;
  const uint64_t entry = (ua - r->ua) >> 16;
  if (entry >= r->entries || shift > r->page_shift) return -EFAULT;
  *hpa = r->dev_hpa != ~0ull ? r->dev_hpa + (ua - r->ua) : ((r->hpas[entry] & ~0xfffull) | (ua & 0xffff));
  *mem = r;
  return 0;
}

// iommu_tce_xchg_no_kill: the walk from the top and the exchange, then the old page's dirty bit unless it is
// device memory.
long xchg_no_kill(const KernelRegionList& regions, iommu::TceTable& table, uint64_t entry, uint64_t hpa,
                  iommu::DmaDirection dir, iommu::DmaDirection* old_dir) {
  auto old = table.exchange(entry, hpa, dir);
  if (!old) return -old.error().value;
  *old_dir = old->direction;
  // SetPageDirty on the struct page is O(1) there; the devmem walk before it is what costs.
  uint64_t size;
  if (iommu::device_may_write(old->direction)) (void)regions.is_devmem(old->hpa, table.page_shift(), &size);
  return 0;
}

void unuse_page_v2(const KernelRegionList& regions, iommu::TceTable& table, uint64_t entry) {
  iommu::TceTable::Leaf pua = table.cache_leaf(entry, false);
  if (!pua.entries) return;
  uint64_t hpa;
  KernelRegion* mem;
  if (prereg_ua_to_hpa(regions, iommu::from_be(pua.entries->load(std::memory_order_relaxed)), table.page_shift(),
                       &hpa, &mem))
    return;
  uint64_t v = mem->mapped.load(std::memory_order_relaxed);
  while (v > 1 && !mem->mapped.compare_exchange_weak(v, v - 1)) {
  }
  pua.entries->store(0, std::memory_order_relaxed);
}

}  // namespace

long kernel_build_v2(const KernelRegionList& regions, iommu::TceTable& table, uint64_t entry, uint64_t ua,
                     uint64_t pages, iommu::DmaDirection dir) {
  const unsigned shift = table.page_shift();
  for (uint64_t i = 0; i < pages; ++i, ua += uint64_t{1} << shift) {
    iommu::TceTable::Leaf pua = table.cache_leaf(entry + i, true);
    if (!pua.entries) return -ENOMEM;
    uint64_t hpa;
    KernelRegion* mem;
    if (long ret = prereg_ua_to_hpa(regions, ua, shift, &hpa, &mem)) return ret;
    // tce_page_is_contained
    uint64_t size;
    if (regions.is_devmem(hpa, shift, &size) ? size != (uint64_t{1} << shift) : mem->page_shift < shift)
      return -EPERM;
    // mm_iommu_mapped_inc: atomic64_inc_not_zero
    uint64_t v = mem->mapped.load(std::memory_order_relaxed);
    do {
      if (v == 0) return -ENXIO;
    } while (!mem->mapped.compare_exchange_weak(v, v + 1));
    iommu::DmaDirection old_dir = iommu::DmaDirection::kNone;
    if (long ret = xchg_no_kill(regions, table, entry + i, hpa & ~((uint64_t{1} << shift) - 1), dir, &old_dir)) {
      unuse_page_v2(regions, table, entry + i);
      return ret;
    }
    if (old_dir != iommu::DmaDirection::kNone) unuse_page_v2(regions, table, entry + i);
    pua.entries->store(iommu::to_be(ua), std::memory_order_relaxed);
  }
  return 0;
}

void kernel_clear_v2(const KernelRegionList& regions, iommu::TceTable& table, uint64_t entry, uint64_t pages) {
  const uint64_t level_mask = table.geometry().level_size() - 1;
  for (; pages; --pages, ++entry) {
    if (table.geometry().levels > 1 && !table.cache_leaf(entry, false).entries) {
      entry |= level_mask;
      continue;
    }
    iommu::DmaDirection old_dir = iommu::DmaDirection::kNone;
    if (xchg_no_kill(regions, table, entry, 0, iommu::DmaDirection::kNone, &old_dir)) continue;
    if (old_dir == iommu::DmaDirection::kNone) continue;
    unuse_page_v2(regions, table, entry);
  }
}

}  // namespace nv2pt::bench
