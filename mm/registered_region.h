// One pre-registered memory region of an address space (the kernel's mm_iommu_table_group_mem_t).
//
// Regular memory: `entries` pinned 64 KiB pages, each with its hpa (bit 0 of an hpa entry is the dirty flag, the low
// 12 bits are masked on use). Device memory (GPU RAM mmap): no pages, no pins, just the physical base dev_hpa.
// Created and destroyed only by Registry; `used` is changed only under the registry's lock, `mapped` is atomic.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <vector>

#include "base/errno.h"
#include "base/host_page.h"

namespace nv2pt::mm {

class RegisteredRegion {
 public:
  // Page shift of a regular region: the natural alignment of ua | size, lowered to the smallest backing page shift
  // of any of its pages (`min_backing_shift`, from PagePinner::page_shift). mm_iommu_do_alloc (v5.2+) let a normal
  // page after a huge one keep the huge shift (docs/kernel/registry.md#page-shift).
  static unsigned regular_page_shift(uint64_t ua, uint64_t entries, unsigned min_backing_shift);
  // Page shift of a device region: the natural alignment of dev_hpa | ua | size. mm_iommu_newdev left out ua, so a
  // large IOMMU page over a misaligned mmap could produce a misaligned hpa (docs/kernel/registry.md#new-device-region).
  static unsigned device_page_shift(uint64_t ua, uint64_t entries, uint64_t dev_hpa);

  // Regular: hpas.size() == entries. Registry-internal; arguments already validated.
  RegisteredRegion(uint64_t ua, uint64_t entries, unsigned page_shift, std::vector<uint64_t> hpas);
  // Device.
  RegisteredRegion(uint64_t ua, uint64_t entries, uint64_t dev_hpa);

  RegisteredRegion(const RegisteredRegion&) = delete;
  RegisteredRegion& operator=(const RegisteredRegion&) = delete;

  uint64_t ua() const { return ua_; }
  uint64_t entries() const { return entries_; }
  uint64_t size() const { return entries_ << 16; }
  uint64_t end() const { return ua_ + size(); }  // cannot wrap: checked at creation
  unsigned page_shift() const { return page_shift_; }
  bool is_device() const { return dev_hpa_.has_value(); }
  std::optional<uint64_t> dev_hpa() const { return dev_hpa_; }
  // [ua, ua + size) lies inside the region. False for size 0 or a wrapping range. Inline, as ua_to_hpa: MAP and
  // UNMAP ask both for every IOMMU page.
  bool contains(uint64_t ua, uint64_t size) const {
    return size != 0 && ua >= ua_ && ua <= end() && size <= end() - ua;
  }

  // Host physical address backing `ua`, for an IOMMU page of 2^page_shift. EFAULT if ua is outside the region or
  // page_shift is larger than the region's (the "page size >= IOMMU page size" rule).
  //   device:  dev_hpa + (ua - region ua)
  //   regular: (hpa of ua's page & ~0xFFF) | (ua & 0xFFFF)
  Result<uint64_t> ua_to_hpa(uint64_t ua, unsigned page_shift) const {
    if (ua < ua_) return fail(kEFAULT);
    const uint64_t entry = (ua - ua_) >> kHostPageShift;
    if (entry >= entries_ || page_shift > page_shift_) return fail(kEFAULT);
    if (dev_hpa_) return *dev_hpa_ + (ua - ua_);
    // Relaxed: the array is written only through atomic_ref (dirty bits from concurrent DMA models).
    const uint64_t stored =
        std::atomic_ref<uint64_t>(const_cast<uint64_t&>(hpas_[entry])).load(std::memory_order_relaxed);
    return (stored & ~uint64_t{0xFFF}) | (ua & (kHostPageSize - 1));
  }

  // One more TCE points into the region. ENXIO once the region is being destroyed (mapped == 0).
  Result<void> mapped_inc();
  // One TCE fewer. Never below 1 (the registration's own count).
  void mapped_dec();
  // Batched forms for MAP/UNMAP, which count per run of pages rather than per page. mapped_add: n more TCEs; the
  // caller already made one mapped_inc() succeed under the registry's read guard, so the region cannot be at 0.
  // mapped_sub: n TCEs fewer, never below 1.
  void mapped_add(uint64_t n) { mapped_.fetch_add(n, std::memory_order_acq_rel); }
  void mapped_sub(uint64_t n);
  uint64_t mapped() const { return mapped_.load(std::memory_order_acquire); }
  uint64_t used() const { return used_.load(std::memory_order_acquire); }

  // Its last reference could not be put: a container went (tce_iommu_release) while TCEs of another container
  // still mapped the region. The kernel warns and the region stays registered, pinned and charged for good, as it
  // must, or those TCEs would point at unpinned pages; the releasing container marks it so.
  void mark_orphaned() { orphaned_.store(true, std::memory_order_relaxed); }
  bool orphaned() const { return orphaned_.load(std::memory_order_relaxed); }

  // A device wrote the page holding ua. No-op for device memory or an address outside the region.
  void mark_dirty(uint64_t ua);
  bool is_dirty(uint64_t ua) const;
  // hpa of page `entry` without the dirty bit (regular only; 0 for device or out of range).
  uint64_t page_hpa(uint64_t entry) const;

 private:
  friend class Registry;

  // Registry::put's step "used hit 0: no new mappings": mapped 1 -> 0. False if TCEs still map the region.
  bool begin_destroy();

  const uint64_t ua_;
  const uint64_t entries_;
  const unsigned page_shift_;
  const std::optional<uint64_t> dev_hpa_;
  // Regular: entries_ hpas; bit 0 = dirty. Written with atomic_ref (dirty bits from concurrent DMA models).
  std::vector<uint64_t> hpas_;
  std::atomic<uint64_t> used_{1};
  std::atomic<uint64_t> mapped_{1};
  std::atomic<bool> orphaned_{false};
};

}  // namespace nv2pt::mm
