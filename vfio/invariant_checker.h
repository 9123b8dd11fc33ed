// The invariants of docs/kernel/invariants.md, checked over one address space and the containers bound to it. Tests run
// it after every step; each violation comes back as a sentence naming the object and the rule.
#pragma once

#include <string>
#include <vector>

#include "mm/address_space.h"
#include "vfio/spapr_tce_iommu.h"

namespace nv2pt::vfio {

struct InvariantReport {
  std::vector<std::string> violations;
  bool ok() const { return violations.empty(); }
  std::string to_string() const;
};

// `extra_locked_pages`: charges made by others (e.g. KVM tables) that the balance must include.
InvariantReport check_invariants(const mm::AddressSpace& as, const std::vector<const SpaprTceIommu*>& containers,
                                 uint64_t extra_locked_pages = 0);

}  // namespace nv2pt::vfio
