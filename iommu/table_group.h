// An IOMMU table group (iommu_table_group): what a VFIO container attaches to. Either one PE, or the compound
// NVLink group whose members are GPU PEs and the NPU PEs of their bridges: its page sizes are the intersection of
// both PHBs' (4 KiB | 64 KiB on Witherspoon), and window programming fans out to every member, rolling back the
// members already done when one fails (npu-dma.c, v5.0–v5.12).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/thread_annotations.h"
#include "base/errno.h"
#include "iommu/pe.h"
#include "iommu/tce_table.h"

namespace nv2pt::iommu {

// Bit n set = IOMMU page size 2^n supported.
using PageSizeMask = uint64_t;

// From an `ibm,supported-tce-sizes` list of shifts.
PageSizeMask page_size_mask(const std::vector<uint32_t>& shifts);

class TableGroup {
 public:
  // Which driver's ops the group carries. The container refuses to mix groups whose ops differ (EPERM), and only
  // groups without ownership ops work with a v1 container.
  enum class Ops {
    kIoda2,        // one PowerNV PHB4 PE: DDW-capable, take/release ownership
    kNpuCompound,  // GPU PEs + NPU PEs: DDW-capable, fans out
    kLegacy,       // no ownership ops (pseries/POWER7-style): v1 only; the group owns a fixed 32-bit table
  };

  struct Properties {
    uint64_t tce32_start = 0;
    uint64_t tce32_size = 2ull << 30;  // PHB4's 32-bit MMIO base: M32 sits at PCI 0x8000_0000
    PageSizeMask pgsizes = (1ull << 12) | (1ull << 16);
    unsigned max_dynamic_windows = kMaxWindows;
    unsigned max_levels = kMaxLevels;
    unsigned tce32_page_shift = 12;  // legacy groups: the IOMMU page size of the fixed 32-bit table
  };

  TableGroup(std::string name, Ops ops, Properties properties, std::vector<Pe*> members);
  ~TableGroup();

  const std::string& name() const { return name_; }
  Ops ops() const { return ops_; }
  const Properties& properties() const { return properties_; }
  bool ddw_capable() const { return ops_ != Ops::kLegacy; }
  const std::vector<Pe*>& members() const { return members_; }

  // create_table: an unlinked table for window `num` (#0 at tce32_start, #1 at 2^59) with a user-address cache.
  Result<std::unique_ptr<TceTable>> create_table(unsigned num, unsigned page_shift, uint64_t window_size,
                                                 unsigned levels, uint64_t max_alloc_bytes) const;
  // Programs window `num` into every member, in order; on failure unsets the members already programmed.
  Result<void> set_window(unsigned num, TceTable* table);
  // The table programmed in window `num` through this group, nullptr if none: what KVM attaches to. The group
  // keeps its own record (table_group->tables[]): a member PE cannot answer for every window, since an NPU PE
  // holds only the window programmed last.
  TceTable* table(unsigned num) const;
  void unset_window(unsigned num);

  // VFIO takes the group from the host: every member PE is taken (bypass off, host default window #0 dropped, an
  // NPU PE's GPU context unmapped from the host).
  void take_ownership();
  // Back to the host: its default configuration (bypass on) is rebuilt, NPU contexts mapped to the host again.
  void release_ownership();
  bool owned_by_user() const;

  // Legacy groups only: the fixed 32-bit table the group owns.
  TceTable* legacy_table() const { return legacy_table_.get(); }

 private:
  std::string name_;
  Ops ops_;
  Properties properties_;
  std::vector<Pe*> members_;
  std::unique_ptr<TceTable> legacy_table_;
  mutable Mutex mutex_;
  bool owned_by_user_ NV2PT_GUARDED_BY(mutex_) = false;
  std::array<TceTable*, kMaxWindows> tables_ NV2PT_GUARDED_BY(mutex_){};

};

}  // namespace nv2pt::iommu
