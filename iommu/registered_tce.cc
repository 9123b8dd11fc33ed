#include "iommu/registered_tce.h"

#include "mm/registered_region.h"

namespace nv2pt::iommu {

bool put_registered_tce(const mm::Registry::ReadGuard& guard, uint64_t page_size, DmaDirection direction,
                        uint64_t ua) {
  mm::RegisteredRegion* region = ua ? guard.lookup(ua, page_size) : nullptr;
  if (!region) return false;
  if (device_may_write(direction)) region->mark_dirty(ua);  // no-op for device memory
  region->mapped_dec();
  return true;
}

}  // namespace nv2pt::iommu
