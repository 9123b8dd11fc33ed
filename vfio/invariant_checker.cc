#include "vfio/invariant_checker.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>

namespace nv2pt::vfio {

std::string InvariantReport::to_string() const {
  std::string out;
  for (const std::string& v : violations) out += v + "\n";
  return out;
}

namespace {

// The first index in [from, n) whose word is not zero, else n. Not instrumented, plain loads: the checker runs
// with writers quiescent, and most of a 2 GiB default window's 512 Ki entries are empty, so this loop is most of
// its cost (a block-wise OR lets the compiler vectorise it).
__attribute__((no_sanitize("address", "undefined"))) uint64_t next_nonzero(const std::atomic<uint64_t>* entries,
                                                                           uint64_t from, uint64_t n) {
  const auto* words = reinterpret_cast<const uint64_t*>(entries);
  constexpr uint64_t kBlock = 64;
  uint64_t i = from;
  for (; i < n && i % kBlock; ++i)
    if (words[i]) return i;
  for (; i + kBlock <= n; i += kBlock) {
    uint64_t any = 0;
    for (uint64_t j = 0; j < kBlock; ++j) any |= words[i + j];
    if (any) break;
  }
  for (; i < n; ++i)
    if (words[i]) return i;
  return n;
}

// The per-TCE rules over one window. region_of(ua, size) finds the region holding a user address.
template <class RegionOf>
InvariantCache::Walk walk_window(const iommu::TceTable& t, unsigned slot, bool v2, RegionOf&& region_of) {
  InvariantCache::Walk out;
  auto violation = [&](std::string text) { out.violations.push_back(std::move(text)); };
  std::map<const mm::RegisteredRegion*, uint64_t> per_region;
  // Outside the written range every entry is zero (TceTable::written_range): the leaves' parts inside it only.
  const iommu::TceTable::Range written = t.written_range();
  const uint64_t written_end = std::min(written.end, t.size());
  t.for_each_leaf(false, [&](uint64_t first, iommu::TceTable::Leaf leaf) {
    if (first >= written_end || first + leaf.count <= written.first) return;
    const uint64_t n = std::min(leaf.count, written_end - first);
    const uint64_t from = written.first > first ? written.first - first : 0;
    for (uint64_t i = next_nonzero(leaf.entries, from, n); i < n; i = next_nonzero(leaf.entries, i + 1, n)) {
      const uint64_t tce = iommu::from_be(leaf.entries[i].load(std::memory_order_relaxed));
      if (!(tce & iommu::kTcePermMask)) continue;
      ++out.valid_tces;
      const uint64_t index = first + i;
      const uint64_t hpa = tce & ~iommu::kTcePermMask;
      if (hpa & (t.page_size() - 1)) violation(fmt::format("4: TCE {} of window {} is misaligned", index, slot));
      if (!v2) continue;
      const uint64_t ua = t.cached_ua(index);
      if (!ua) {
        violation(fmt::format("2/12: TCE {} of window {} has no cached user address", index, slot));
        continue;
      }
      const mm::RegisteredRegion* r = region_of(ua, t.page_size());
      if (!r) {
        violation(fmt::format("2: TCE {} of window {} maps {:#x}, which no region holds", index, slot, ua));
        continue;
      }
      ++per_region[r];
      if (r->is_device()) {
        const uint64_t dev_end = *r->dev_hpa() + r->size();
        if (hpa < *r->dev_hpa() || hpa + t.page_size() > dev_end)
          violation(fmt::format("3: TCE {} of window {} leaves the device window", index, slot));
      } else if (r->page_shift() < t.page_shift()) {
        violation(fmt::format("3: TCE {} of window {} is larger than its backing pages", index, slot));
      }
      auto expected = r->ua_to_hpa(ua, t.page_shift());
      if (!expected || (*expected & ~(t.page_size() - 1)) != hpa)
        violation(fmt::format("2: TCE {} of window {} does not point where its user address does", index, slot));
    }
  });
  out.tces_per_region.assign(per_region.begin(), per_region.end());
  return out;
}

}  // namespace

InvariantReport check_invariants(const mm::AddressSpace& as, const std::vector<const SpaprTceIommu*>& containers,
                                 uint64_t extra_locked_pages, InvariantCache* cache) {
  InvariantReport report;
  auto violation = [&](std::string text) { report.violations.push_back(std::move(text)); };

  // 1, 7: device memory is never charged; regions never overlap. Gather regions for the per-TCE checks.
  struct RegionState {
    const mm::RegisteredRegion* region;
    uint64_t tces = 0;
  };
  std::vector<RegionState> regions;  // in ua order, as the registry gives them
  uint64_t regular_pages = 0;
  uint64_t prev_end = 0;
  as.registry().for_each([&](const mm::RegisteredRegion& r) {
    if (!regions.empty() && r.ua() < prev_end) violation(fmt::format("7: region {:#x} overlaps its predecessor", r.ua()));
    prev_end = r.end();
    regions.push_back({&r});
    if (!r.is_device()) regular_pages += r.entries();
    if (r.mapped() == 0) violation(fmt::format("6: region {:#x} is linked with mapped == 0", r.ua()));
  });
  auto state_of = [&](uint64_t ua) -> RegionState* {  // the last region starting at or below ua
    auto it = std::upper_bound(regions.begin(), regions.end(), ua,
                               [](uint64_t a, const RegionState& rs) { return a < rs.region->ua(); });
    return it == regions.begin() ? nullptr : &*std::prev(it);
  };
  auto region_of = [&](uint64_t ua, uint64_t size) -> const mm::RegisteredRegion* {
    const RegionState* rs = state_of(ua);
    return rs && rs->region->contains(ua, size) ? rs->region : nullptr;
  };
  // Whether a cached walk saw exactly these regions (regions are immutable while linked).
  auto same_regions = [&](const InvariantCache::Walk& walk) {
    if (walk.regions.size() != regions.size()) return false;
    for (size_t i = 0; i < regions.size(); ++i)
      if (walk.regions[i].first != regions[i].region || walk.regions[i].second != regions[i].region->entries())
        return false;
    return true;
  };
  if (cache) ++cache->epoch;

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
      // 2, 3, 4, 12: per TCE, unless the cache saw this table unchanged against the same regions.
      InvariantCache::Walk* seen = nullptr;
      if (cache) {
        // A walk that found no valid TCE looked no region up, so it holds for any region set.
        auto it = cache->walks.find(t.uid());
        if (it != cache->walks.end() && it->second.generation == t.generation() && it->second.slot == w.slot &&
            ((it->second.valid_tces == 0 && it->second.violations.empty()) || same_regions(it->second)))
          seen = &it->second;
      }
      InvariantCache::Walk fresh;
      if (!seen && t.generation() == 0) {
        // Never handed out for writing since its zeroed allocation (TceTable::generation): no entry to walk.
        fresh.slot = w.slot;
        if (cache) {
          seen = &cache->walks.insert_or_assign(t.uid(), std::move(fresh)).first->second;
        } else {
          seen = &fresh;
        }
      }
      if (!seen) {
        const uint64_t generation = t.generation();
        fresh = walk_window(t, w.slot, v2, region_of);
        fresh.generation = generation;
        fresh.slot = w.slot;
        if (cache) {
          for (const RegionState& rs : regions) fresh.regions.emplace_back(rs.region, rs.region->entries());
          seen = &cache->walks.insert_or_assign(t.uid(), std::move(fresh)).first->second;
        } else {
          seen = &fresh;
        }
      }
      if (cache) seen->epoch = cache->epoch;
      for (const std::string& v : seen->violations) violation(v);
      for (const auto& [region, n] : seen->tces_per_region) state_of(region->ua())->tces += n;
      const uint64_t valid_tces = seen->valid_tces;
      // The count the mapping limit (CVE-2019-3882) relies on.
      if (valid_tces != t.live_entries())
        violation(fmt::format("mapping limit: window {} counts {} live TCEs but holds {}", w.slot, t.live_entries(),
                              valid_tces));
    }
  }
  if (cache) std::erase_if(cache->walks, [&](const auto& kv) { return kv.second.epoch != cache->epoch; });
  // 2, 5: mapped − 1 counts exactly the TCEs into the region (over all containers given).
  for (const RegionState& rs : regions) {
    if (rs.region->mapped() != rs.tces + 1)
      violation(fmt::format("2: region {:#x} has mapped {} but {} TCEs point into it", rs.region->ua(),
                            rs.region->mapped(), rs.tces));
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
