// A host TCE of a v2 container or of KVM's in-kernel path maps pre-registered memory: it holds one mapped count on
// the registered region (mm_iommu_mapped_inc), and the table's user-address cache word says which region. Both
// writers give that count back the same way when the entry is overwritten or cleared.
#pragma once

#include <cstdint>

#include "iommu/tce.h"
#include "mm/registry.h"

namespace nv2pt::iommu {

// The host TCE that mapped `ua` with `direction` is gone: marks the page dirty if the device could write it
// (iommu_tce_xchg_no_kill) and drops the region's mapped count (tce_iommu_unuse_page_v2,
// kvmppc_tce_iommu_mapped_dec). False if no registered region holds the page (ua 0: no cached address).
bool put_registered_tce(const mm::Registry::ReadGuard& guard, uint64_t page_size, DmaDirection direction,
                        uint64_t ua);

}  // namespace nv2pt::iommu
