// The pre-registration registry of one address space (the kernel's mm->context.iommu_group_mem_list and
// iommu_api.c), with logarithmic lookups.
//
// Regions of one address space never overlap (regular or device), so they sit in an ordered map keyed by ua, and
// "the region containing [ua, ua+size)" is one upper_bound. Device regions are also kept by dev_hpa for is_devmem().
//
// Concurrency. One SharedMutex: every change (add, get, put) takes it exclusively; readers (a MAP_DMA, a KVM
// H_PUT_TCE) take it shared through a ReadGuard for their whole range and do one lookup per region they cross.
// put() unlinks under the exclusive lock, so a region a ReadGuard found stays linked and alive until the guard goes:
// a mapped_inc() under the guard either happens before put() (which then sees mapped > 1: EBUSY) or the lookup
// misses. Regions are also held by shared_ptr (RegionRef), so a stale handle is never a dangling pointer: after its
// put() it reports used 0 and mapped 0 (mapped_inc gives ENXIO).
//
// Errors follow kernel v5.2+ (iommu_api.c after the deadlock fix), departing where docs/kernel-differences.md says:
//   add_regular: EINVAL bad arguments (incl. entries 0, not ENOMEM) -> ENOMEM over RLIMIT_MEMLOCK -> EFAULT
//                pinning failed (never a positive count) / ENOMEM out of frames -> EINVAL overlap. On every error
//                nothing is left pinned or charged (docs/kernel/registry.md#new-regular-region).
//   add_device:  EINVAL bad arguments or overlap. No pinning, no charge.
//   get:         ENOENT unless a region has exactly this ua and entries.
//   put:         ENOENT already released; EBUSY the last reference with TCEs still mapping the region.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>

#include "base/errno.h"
#include "mm/locked_memory.h"
#include "mm/page_pinner.h"
#include "mm/registered_region.h"
#include "mm/thread_annotations.h"

namespace nv2pt::mm {

using RegionRef = std::shared_ptr<RegisteredRegion>;

class Registry {
 public:
  // Both outlive the registry (AddressSpace owns all three).
  Registry(LockedMemory& locked, PagePinner& pinner);
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // mm_iommu_new: pin and charge [ua, ua + entries * 64K) and register it with used = 1, mapped = 1.
  Result<RegionRef> add_regular(uint64_t ua, uint64_t entries);
  // mm_iommu_newdev: register device memory [ua, ...) whose physical base is dev_hpa.
  Result<RegionRef> add_device(uint64_t ua, uint64_t entries, uint64_t dev_hpa);
  // mm_iommu_get: the region with exactly this ua and entries, with used + 1.
  Result<RegionRef> get(uint64_t ua, uint64_t entries);
  // mm_iommu_put: drop one `used` reference; the last one unlinks the region and unpins/uncharges regular memory.
  Result<void> put(const RegionRef& region);

  // Shared hold on the registry: regions found through it stay linked and alive while it exists.
  class NV2PT_SCOPED_CAPABILITY ReadGuard {
   public:
    ~ReadGuard() NV2PT_RELEASE() { registry_.mu_.unlock_shared(); }
    ReadGuard(const ReadGuard&) = delete;
    ReadGuard& operator=(const ReadGuard&) = delete;

    // The region that fully contains [ua, ua + size) (size > 0), or nullptr. No reference is taken: the pointer is
    // valid while this guard lives.
    RegisteredRegion* lookup(uint64_t ua, uint64_t size) const;
    // If hpa is in a device region: min(2^page_shift, region's physical end - hpa). Else nullopt. Inline: MAP asks
    // it for every IOMMU page, and an hpa outside every device region (all of regular memory) is two compares.
    std::optional<uint64_t> is_devmem(uint64_t hpa, unsigned page_shift) const NV2PT_NO_THREAD_SAFETY_ANALYSIS {
      if (hpa < registry_.dev_lo_ || hpa >= registry_.dev_hi_) return std::nullopt;
      return registry_.find_devmem(hpa, page_shift);
    }

   private:
    friend class Registry;
    explicit ReadGuard(const Registry& registry) NV2PT_ACQUIRE_SHARED(registry.mu_) : registry_(registry) {
      registry_.mu_.lock_shared();
    }
    const Registry& registry_;
  };
  ReadGuard read() const { return ReadGuard(*this); }

  // One-shot forms that take their own guard; lookup returns a counted reference so it stays valid after.
  RegionRef lookup(uint64_t ua, uint64_t size) const;
  std::optional<uint64_t> is_devmem(uint64_t hpa, unsigned page_shift) const;

  bool empty() const;  // the kernel's mm_iommu_preregistered() is !empty()
  size_t size() const;
  // Every region in ua order, under the shared lock (fn must not call back into the registry's changing methods).
  void for_each(const std::function<void(const RegisteredRegion&)>& fn) const;

 private:
  bool overlaps(uint64_t ua, uint64_t end) const NV2PT_REQUIRES_SHARED(mu_);
  Result<RegionRef> insert(RegionRef region) NV2PT_REQUIRES(mu_);
  RegisteredRegion* find_containing(uint64_t ua, uint64_t size) const NV2PT_REQUIRES_SHARED(mu_);
  std::optional<uint64_t> find_devmem(uint64_t hpa, unsigned page_shift) const NV2PT_REQUIRES_SHARED(mu_);

  LockedMemory& locked_;
  PagePinner& pinner_;

  mutable SharedMutex mu_;
  std::map<uint64_t, RegionRef> by_ua_ NV2PT_GUARDED_BY(mu_);
  std::multimap<uint64_t, RegisteredRegion*> by_dev_hpa_ NV2PT_GUARDED_BY(mu_);  // device regions only
  uint64_t max_dev_size_ NV2PT_GUARDED_BY(mu_) = 0;  // bounds the backward scan of is_devmem
  // [lowest dev_hpa, highest device end) over the device regions; empty (0, 0) without any.
  uint64_t dev_lo_ NV2PT_GUARDED_BY(mu_) = 0;
  uint64_t dev_hi_ NV2PT_GUARDED_BY(mu_) = 0;
};

}  // namespace nv2pt::mm
