// An address space as the VFIO/KVM code sees it (the kernel's mm_struct): its locked-memory counter, the pinned
// pages with their host physical addresses, and the pre-registration registry.
//
// The model runs inside the client process, so the "current" address space is this process (id = pid). Tests build
// their own with a chosen id, memlock policy, RAM layout and page-shift source, and can make one current for the
// calling thread (ScopedCurrent) to play "another process" against a container bound to the first.
#pragma once

#include <cstdint>

#include "mm/locked_memory.h"
#include "mm/page_pinner.h"
#include "mm/registry.h"

namespace nv2pt::mm {

struct AddressSpaceOptions {
  uint64_t id = 0;  // 0: this process's pid
  MemlockPolicy memlock = MemlockPolicy::current_process();
  PagePinnerOptions pinner;
};

class AddressSpace {
 public:
  explicit AddressSpace(AddressSpaceOptions options = {});
  // Regions still registered are left as they are (the kernel only warns about them at mm teardown).
  ~AddressSpace() = default;
  AddressSpace(const AddressSpace&) = delete;
  AddressSpace& operator=(const AddressSpace&) = delete;

  // The calling thread's address space: the ScopedCurrent override if one is active, else the process-wide one
  // (created on first use with default options; lives until exit).
  static AddressSpace& current();

  // Makes `as` current for this thread until destroyed (nests).
  class ScopedCurrent {
   public:
    explicit ScopedCurrent(AddressSpace& as);
    ~ScopedCurrent();
    ScopedCurrent(const ScopedCurrent&) = delete;
    ScopedCurrent& operator=(const ScopedCurrent&) = delete;

   private:
    AddressSpace* previous_;
  };

  // Identity for "one container, one mm" (tce_iommu_mm_set; docs/kernel/container.md#mm-binding): containers
  // record it and compare later callers' ids.
  uint64_t id() const { return id_; }

  LockedMemory& locked_memory() { return locked_; }
  const LockedMemory& locked_memory() const { return locked_; }
  PagePinner& pinner() { return pinner_; }
  const PagePinner& pinner() const { return pinner_; }
  Registry& registry() { return registry_; }
  const Registry& registry() const { return registry_; }

 private:
  const uint64_t id_;
  LockedMemory locked_;
  PagePinner pinner_;
  Registry registry_;  // last: uses the two above
};

}  // namespace nv2pt::mm
