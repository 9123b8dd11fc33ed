// The IOMMU groups the real host builds, assembled by hand for tests and benchmarks (no test framework needed).
#pragma once

#include <string>

#include "iommu/pe.h"
#include "iommu/table_group.h"
#include "vfio/group.h"

namespace nv2pt::vfio::testing {

// One GPU with its NVLink bridges as the seed groups them: a compound table group of the GPU's PHB4 PE and the NPU
// PE of its bridges, page sizes PHB4 ∩ NPU2 = 4K|64K.
struct NvlinkGroup {
  explicit NvlinkGroup(int id)
      : gpu("gpu" + std::to_string(id), iommu::Pe::Kind::kPhb4),
        npu("npu" + std::to_string(id), iommu::Pe::Kind::kNpu2),
        table_group("group" + std::to_string(id), iommu::TableGroup::Ops::kNpuCompound, {}, {&gpu, &npu}),
        group(id, &table_group) {}
  iommu::Pe gpu;
  iommu::Pe npu;
  iommu::TableGroup table_group;
  Group group;
};

// A plain PHB4 PE group (IODA2 ops), page sizes 4K|64K|2M|1G.
struct PhbGroup {
  explicit PhbGroup(int id)
      : pe("pe" + std::to_string(id), iommu::Pe::Kind::kPhb4),
        table_group("group" + std::to_string(id), iommu::TableGroup::Ops::kIoda2,
                    {.pgsizes = iommu::page_size_mask({12, 16, 21, 30})}, {&pe}),
        group(id, &table_group) {}
  iommu::Pe pe;
  iommu::TableGroup table_group;
  Group group;
};

// A group without ownership ops (pseries/POWER7-like): the only kind a v1 container takes. Its fixed 32-bit table
// has 4 KiB IOMMU pages unless `page_shift` says otherwise, and spans `tce32_size` bytes (v1's ENABLE charges all
// of it to locked memory).
struct LegacyGroup {
  explicit LegacyGroup(int id, unsigned page_shift = 12, uint64_t tce32_size = 2ull << 30)
      : pe("legacy" + std::to_string(id), iommu::Pe::Kind::kPhb4),
        table_group("legacy" + std::to_string(id), iommu::TableGroup::Ops::kLegacy,
                    {.tce32_size = tce32_size, .tce32_page_shift = page_shift}, {&pe}),
        group(id, &table_group) {}
  iommu::Pe pe;
  iommu::TableGroup table_group;
  Group group;
};

}  // namespace nv2pt::vfio::testing
