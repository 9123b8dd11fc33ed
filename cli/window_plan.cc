#include "cli/window_plan.h"

#include <algorithm>

#include "base/checked.h"
#include "iommu/tce_table.h"
#include "kvm/stt_accounting.h"

namespace nv2pt::cli {
namespace {

// Distinct blocks of `per_block` entries (of 2^shift bytes each) that the sorted, disjoint ranges touch.
uint64_t count_blocks(const std::vector<PlanRange>& sorted, unsigned shift, uint64_t per_block) {
  uint64_t blocks = 0, prev = ~0ull;
  for (const PlanRange& r : sorted) {
    const uint64_t first = (r.start >> shift) / per_block;
    const uint64_t last = ((r.start + r.size - 1) >> shift) / per_block;
    blocks += last - first + 1 - (first == prev ? 1 : 0);
    prev = last;
  }
  return blocks;
}

// Allocates, in a real table of this geometry, every level block the layout's entries sit under, and reports what
// the engine allocated: on-demand levels measured, not estimated.
void measure_layout(const std::vector<PlanRange>& sorted, const PlanInput& input, LevelPlan& level) {
  auto table = iommu::TceTable::create(*level.geometry, 0,
                                       {.userspace_cache = true, .max_alloc_bytes = input.max_alloc_bytes});
  if (!table) return;
  level.allocated_at_creation = (*table)->allocated_bytes();
  const uint64_t per_leaf = level.geometry->entries_per_leaf();
  for (const PlanRange& r : sorted) {
    const uint64_t first = r.start >> input.page_shift;
    const uint64_t last = (r.start + r.size - 1) >> input.page_shift;
    for (uint64_t index = first - first % per_leaf; index <= last; index += per_leaf) {
      (*table)->hw_leaf(index, 1, true);
      (*table)->cache_leaf(index, true);
    }
  }
  level.allocated_for_layout = (*table)->allocated_bytes();
  level.leaf_blocks_touched = count_blocks(sorted, input.page_shift, per_leaf);
}

}  // namespace

Result<Plan> make_plan(const PlanInput& input) {
  if (input.ranges.empty()) return fail(kEINVAL);
  if (input.page_shift < 12 || input.page_shift > 34) return fail(kEINVAL);
  if (input.guest_page_shift < input.page_shift || input.guest_page_shift > 34) return fail(kEINVAL);
  const uint64_t page = 1ull << input.page_shift;
  Plan plan;
  plan.input = input;
  std::vector<PlanRange> sorted = input.ranges;
  std::sort(sorted.begin(), sorted.end(), [](auto& a, auto& b) { return a.start < b.start; });
  uint64_t prev_end = 0;
  for (size_t i = 0; i < sorted.size(); ++i) {
    const PlanRange& r = sorted[i];
    auto end = checked_add(r.start, r.size);
    if (r.size == 0 || !end || !is_aligned(r.start, page) || !is_aligned(r.size, page)) return fail(kEINVAL);
    if (i && r.start < prev_end) return fail(kEINVAL);
    prev_end = *end;
    plan.leaf_bytes_needed += (r.size >> input.page_shift) * 8;
  }
  plan.end = prev_end;
  plan.exact_fit_flat_bytes = iommu::exact_fit_flat_bytes(plan.end, input.page_shift);
  plan.window_size = iommu::round_up_pow2(plan.end);
  if (plan.window_size == 0) return fail(kEINVAL);
  plan.pow2_flat_bytes = iommu::exact_fit_flat_bytes(plan.window_size, input.page_shift);

  for (unsigned levels = 1; levels <= iommu::kMaxLevels; ++levels) {
    LevelPlan level;
    level.levels = levels;
    level.charged_bytes = iommu::accounting_bytes(input.page_shift, plan.window_size, levels);
    auto geometry = iommu::compute_geometry(input.page_shift, plan.window_size, levels);
    if (!geometry) {
      level.refusal = "EINVAL: 55-bit rule";
    } else {
      level.geometry = *geometry;
      if (auto ok = iommu::check_allocatable(*geometry, input.max_alloc_bytes); !ok) {
        level.refusal = "ENOMEM: block > largest alloc";
      } else {
        level.allowed = true;
        measure_layout(sorted, input, level);
      }
    }
    plan.levels.push_back(std::move(level));
  }

  KvmPlan& kvm = plan.kvm;
  kvm.guest_page_shift = input.guest_page_shift;
  kvm.host_page_shift = input.page_shift;
  kvm.subpages = 1ull << (input.guest_page_shift - input.page_shift);
  kvm.guest_entries = plan.window_size >> input.guest_page_shift;
  // guest_entries is window_size >> shift: the charge cannot overflow.
  kvm.guest_charged_bytes = *kvm::stt_charged_pages(kvm.guest_entries) * kHostPageSize;
  kvm.guest_exact_fit_flat_bytes = iommu::exact_fit_flat_bytes(plan.end, input.guest_page_shift);
  kvm.host_tces_per_indirect_call = 512 * kvm.subpages;
  // stt pages are allocated on demand: the distinct 64 KiB pages of guest TCEs the layout writes.
  kvm.guest_allocated_for_layout =
      count_blocks(sorted, input.guest_page_shift, kHostPageSize / 8) * kHostPageSize;
  return plan;
}

}  // namespace nv2pt::cli
