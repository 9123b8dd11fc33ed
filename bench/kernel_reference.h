// Benchmark-only baselines: the v5.x kernel's own algorithms for the MAP/UNMAP hot path, written against the
// model's data so that the ratio to nv2pt's path measures the algorithm, not the data.
//
//   - Region lookup as mm_iommu_lookup / mm_iommu_is_devmem: a linear walk of the mm's region list (newest first,
//     list_add_rcu at the head), for every IOMMU page.
//   - Table access as tce_iommu_build_v2 / tce_iommu_clear: every entry walks from the top level (pnv_tce) for the
//     table and again for the user-address cache (IOMMU_TABLE_USERSPACE_ENTRY), then exchanges.
//
// Never used by the model; not a test double either.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "iommu/tce.h"
#include "iommu/tce_table.h"

namespace nv2pt::bench {

// One mm_iommu_table_group_mem_t.
struct KernelRegion {
  uint64_t ua = 0;
  uint64_t entries = 0;
  unsigned page_shift = 0;
  uint64_t dev_hpa = ~0ull;  // MM_IOMMU_TABLE_INVALID_HPA for regular memory
  std::vector<uint64_t> hpas;
  std::atomic<uint64_t> mapped{1};
};

class KernelRegionList {
 public:
  // list_add_rcu: the newest region is walked first.
  void add(std::unique_ptr<KernelRegion> region) { list_.insert(list_.begin(), std::move(region)); }

  KernelRegion* lookup(uint64_t ua, uint64_t size) const {
    for (const auto& mem : list_) {
      if (mem->ua <= ua && ua + size <= mem->ua + (mem->entries << 16)) return mem.get();
    }
    return nullptr;
  }

  bool is_devmem(uint64_t hpa, unsigned page_shift, uint64_t* size) const {
    for (const auto& mem : list_) {
      if (mem->dev_hpa == ~0ull) continue;
      const uint64_t end = mem->dev_hpa + (mem->entries << 16);
      if (mem->dev_hpa <= hpa && hpa < end) {
        *size = std::min(uint64_t{1} << page_shift, end - hpa);
        return true;
      }
    }
    return false;
  }

 private:
  std::vector<std::unique_ptr<KernelRegion>> list_;
};

// tce_iommu_build_v2 over [entry, entry + pages): 0 or a negative errno. The table must have its cache.
long kernel_build_v2(const KernelRegionList& regions, iommu::TceTable& table, uint64_t entry, uint64_t ua,
                     uint64_t pages, iommu::DmaDirection dir);
// tce_iommu_clear (v5.x, with the skip over missing cache leaves) for a v2 container.
void kernel_clear_v2(const KernelRegionList& regions, iommu::TceTable& table, uint64_t entry, uint64_t pages);

}  // namespace nv2pt::bench
