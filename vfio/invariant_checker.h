// The invariants of docs/kernel/invariants.md, checked over one address space and the containers bound to it. Tests run
// it after every step; each violation comes back as a sentence naming the object and the rule.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "mm/address_space.h"
#include "vfio/spapr_tce_iommu.h"

namespace nv2pt::vfio {

struct InvariantReport {
  std::vector<std::string> violations;
  bool ok() const { return violations.empty(); }
  std::string to_string() const;
};

// What the per-TCE walk found in one window, kept between checks: a caller that checks after every step (the
// fuzzer) walks a table again only when it changed (TceTable::generation) or the set of regions did. Everything
// else (counts against live_entries and mapped, PEs, locked memory) is checked afresh every time.
class InvariantCache {
 public:
  struct Walk {
    uint64_t generation = 0;
    uint64_t epoch = 0;  // the last check that used it
    unsigned slot = 0;
    std::vector<std::pair<const mm::RegisteredRegion*, uint64_t>> regions;  // the region set it was walked against
    uint64_t valid_tces = 0;
    std::vector<std::pair<const mm::RegisteredRegion*, uint64_t>> tces_per_region;
    std::vector<std::string> violations;
  };
  std::map<uint64_t, Walk> walks;  // by TceTable::uid; tables not seen by the last check are dropped
  uint64_t epoch = 0;               // checks made
};

// `extra_locked_pages`: charges made by others (e.g. KVM tables) that the balance must include. Writers must be
// quiescent while it runs when a cache is given.
InvariantReport check_invariants(const mm::AddressSpace& as, const std::vector<const SpaprTceIommu*>& containers,
                                 uint64_t extra_locked_pages = 0, InvariantCache* cache = nullptr);

}  // namespace nv2pt::vfio
