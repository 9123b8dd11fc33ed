#include "vfio/invariant_checker.h"

#include <fmt/format.h>

#include <map>

namespace nv2pt::vfio {

std::string InvariantReport::to_string() const {
  std::string out;
  for (const std::string& v : violations) out += v + "\n";
  return out;
}

InvariantReport check_invariants(const mm::AddressSpace& as, const std::vector<const SpaprTceIommu*>& containers,
                                 uint64_t extra_locked_pages) {
  InvariantReport report;
  auto violation = [&](std::string text) { report.violations.push_back(std::move(text)); };

  // 1, 7: device memory is never charged; regions never overlap. Gather regions for the per-TCE checks.
  struct RegionState {
    const mm::RegisteredRegion* region;
    uint64_t tces = 0;
  };
  std::map<uint64_t, RegionState> regions;  // by ua
  uint64_t regular_pages = 0;
  uint64_t prev_end = 0;
  as.registry().for_each([&](const mm::RegisteredRegion& r) {
    if (!regions.empty() && r.ua() < prev_end) violation(fmt::format("7: region {:#x} overlaps its predecessor", r.ua()));
    prev_end = r.end();
    regions[r.ua()] = {&r};
    if (!r.is_device()) regular_pages += r.entries();
    if (r.mapped() == 0) violation(fmt::format("6: region {:#x} is linked with mapped == 0", r.ua()));
  });
  auto region_of = [&](uint64_t ua, uint64_t size) -> RegionState* {
    auto it = regions.upper_bound(ua);
    if (it == regions.begin()) return nullptr;
    --it;
    return it->second.region->contains(ua, size) ? &it->second : nullptr;
  };

  uint64_t container_pages = 0;
  for (const SpaprTceIommu* c : containers) {
    container_pages += c->charged_pages();
    const bool v2 = c->version() == SpaprTceIommu::Version::kV2;
    const auto groups = c->groups();
    const auto windows = c->windows();
    for (const SpaprTceIommu::WindowInfo& w : windows) {
      const iommu::TceTable& t = *w.table;
      const iommu::TableGeometry& g = t.geometry();
      // 10: geometry.
      if (g.level_bits * g.levels + g.page_shift >= iommu::kAddressableShiftLimit || g.levels > iommu::kMaxLevels)
        violation(fmt::format("10: window {} breaks the 55-bit rule or the level limit", w.slot));
      const unsigned addressable_bits = g.levels == 1 ? g.table_shift - 3 : g.level_bits * g.levels;
      if (addressable_bits < 64 && (1ull << addressable_bits) < t.size())
        violation(fmt::format("10: window {} addresses fewer entries than its size", w.slot));
      // 13: every window is programmed in every member PE of every group (the NPU PE holds the last one only).
      for (Group* grp : groups) {
        if (!grp->table_group()->ddw_capable()) continue;
        for (iommu::Pe* pe : grp->table_group()->members()) {
          if (pe->kind() == iommu::Pe::Kind::kNpu2) {
            if (pe->window_count() > 1) violation(fmt::format("13: NPU PE {} holds two windows", pe->name()));
          } else if (pe->window(w.slot) != &t) {
            violation(fmt::format("13: window {} is not programmed in PE {} of group {}", w.slot, pe->name(),
                                  grp->id()));
          }
        }
      }
      // 2, 3, 4, 12: per TCE.
      uint64_t valid_tces = 0;
      t.for_each_leaf(false, [&](uint64_t first, iommu::TceTable::Leaf leaf) {
        for (uint64_t i = 0; i < leaf.count && first + i < t.size(); ++i) {
          const uint64_t tce = iommu::from_be(leaf.entries[i].load(std::memory_order_relaxed));
          if (!(tce & iommu::kTcePermMask)) continue;
          ++valid_tces;
          const uint64_t index = first + i;
          const uint64_t hpa = tce & ~iommu::kTcePermMask;
          if (hpa & (t.page_size() - 1)) violation(fmt::format("4: TCE {} of window {} is misaligned", index, w.slot));
          if (!v2) continue;
          const uint64_t ua = t.cached_ua(index);
          if (!ua) {
            violation(fmt::format("2/12: TCE {} of window {} has no cached user address", index, w.slot));
            continue;
          }
          RegionState* rs = region_of(ua, t.page_size());
          if (!rs) {
            violation(fmt::format("2: TCE {} of window {} maps {:#x}, which no region holds", index, w.slot, ua));
            continue;
          }
          ++rs->tces;
          const mm::RegisteredRegion& r = *rs->region;
          if (r.is_device()) {
            const uint64_t dev_end = *r.dev_hpa() + r.size();
            if (hpa < *r.dev_hpa() || hpa + t.page_size() > dev_end)
              violation(fmt::format("3: TCE {} of window {} leaves the device window", index, w.slot));
          } else if (r.page_shift() < t.page_shift()) {
            violation(fmt::format("3: TCE {} of window {} is larger than its backing pages", index, w.slot));
          }
          auto expected = r.ua_to_hpa(ua, t.page_shift());
          if (!expected || (*expected & ~(t.page_size() - 1)) != hpa)
            violation(fmt::format("2: TCE {} of window {} does not point where its user address does", index, w.slot));
        }
      });
      // The count the mapping limit (CVE-2019-3882) relies on.
      if (valid_tces != t.live_entries())
        violation(fmt::format("mapping limit: window {} counts {} live TCEs but holds {}", w.slot, t.live_entries(),
                              valid_tces));
    }
  }
  // 2, 5: mapped − 1 counts exactly the TCEs into the region (over all containers given).
  for (auto& [ua, rs] : regions) {
    if (rs.region->mapped() != rs.tces + 1)
      violation(fmt::format("2: region {:#x} has mapped {} but {} TCEs point into it", ua, rs.region->mapped(),
                            rs.tces));
  }
  // 9: locked memory = regular registrations + container charges + others'.
  const uint64_t locked = as.locked_memory().locked_pages();
  if (locked != regular_pages + container_pages + extra_locked_pages)
    violation(fmt::format("9: locked {} pages, expected {} (registrations) + {} (containers) + {} (other)", locked,
                          regular_pages, container_pages, extra_locked_pages));
  if (as.locked_memory().underflows()) violation("9: locked memory went below zero");
  return report;
}

}  // namespace nv2pt::vfio
