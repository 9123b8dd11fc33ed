// `nv2pt plan`: TCE table and DMA window sizing for a guest layout, computed by the TCE engine itself
// (iommu/table_geometry for the rules, iommu/tce_table for what on-demand levels really allocate).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/errno.h"
#include "iommu/table_geometry.h"

namespace nv2pt::cli {

// One range of bus space the guest maps: its RAM, or a GPU's RAM window. Offsets are inside the DMA window.
struct PlanRange {
  std::string name;
  uint64_t start = 0;
  uint64_t size = 0;
};

struct PlanInput {
  std::vector<PlanRange> ranges;
  unsigned page_shift = 16;  // host IOMMU page
  uint64_t max_alloc_bytes = iommu::kDefaultMaxAllocBytes;
  unsigned guest_page_shift = 24;  // the KVM case: guest IOMMU pages backed by page_shift host TCEs
  std::string default_gpu;  // the GPU taken because none was named (said in the output), empty otherwise
};

struct LevelPlan {
  unsigned levels = 0;
  bool allowed = false;
  std::string refusal;  // why creation fails (errno and rule), empty when allowed
  std::optional<iommu::TableGeometry> geometry;  // absent when the geometry itself is invalid
  uint64_t charged_bytes = 0;               // locked memory: every level, table + cache
  uint64_t allocated_at_creation = 0;       // top blocks, table + cache
  uint64_t allocated_for_layout = 0;        // after the layout is mapped, table + cache
  uint64_t leaf_blocks_touched = 0;         // per tree
};

struct KvmPlan {
  unsigned guest_page_shift = 0;
  unsigned host_page_shift = 0;
  uint64_t subpages = 0;                // host TCEs behind one guest TCE
  uint64_t guest_entries = 0;           // guest TCEs in the power-of-two window
  uint64_t guest_charged_bytes = 0;     // stt, charged in full
  uint64_t guest_allocated_for_layout = 0;  // stt pages the layout touches (allocated on demand)
  uint64_t guest_exact_fit_flat_bytes = 0;
  uint64_t host_tces_per_indirect_call = 0;  // one H_PUT_TCE_INDIRECT of 512 guest TCEs
};

struct Plan {
  PlanInput input;
  uint64_t end = 0;                   // highest bus address mapped
  uint64_t leaf_bytes_needed = 0;     // TCEs the layout really needs
  uint64_t exact_fit_flat_bytes = 0;  // a flat table reaching `end`, ignoring the power-of-two rule
  uint64_t window_size = 0;           // the power-of-two window the kernel would create
  uint64_t pow2_flat_bytes = 0;       // a flat table of that window (hardware table only)
  std::vector<LevelPlan> levels;      // 1..5
  KvmPlan kvm;
};

// EINVAL for an empty layout, a zero-sized, misaligned or wrapping range, overlapping ranges, or a page shift the
// engine cannot use.
Result<Plan> make_plan(const PlanInput& input);

}  // namespace nv2pt::cli
