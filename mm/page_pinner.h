// What "pinning user pages" means in the model: get_user_pages(FOLL_WRITE | FOLL_LONGTERM) on the current process,
// plus the host physical addresses (hpa) the pinned pages have on the modelled POWER9.
//
// How hpas are assigned and kept
//   The model's host RAM is the list of [base, size) ranges given at construction (default [0, 256 GiB)). The real
//   machine's physical addresses are never used. When a 64 KiB page of user memory is pinned and is not pinned yet,
//   it gets a free 64 KiB frame of that RAM (FrameAllocator, lowest free address first, one contiguous run for a
//   contiguous pin where possible). While the page has pins, its hpa never changes: pinning it again only counts
//   (the same hpa is returned), and the frame is given back only when the last pin goes. Pages of a hugetlb VMA
//   (see page_shift_source.h) get one contiguous frame run aligned to the huge page size, so that a large IOMMU page
//   over them maps an aligned, contiguous hpa range; if no such run is free they fall back to 64 KiB frames and are
//   reported as 64 KiB-backed (page_shift()).
//
//   Pins are kept as extents keyed by user address: [start, end) with one pin count, one backing shift and one
//   contiguous hpa run (hpa of page = extent hpa + (ua - start)). Pinning or unpinning part of an extent splits it;
//   neighbours with the same count and contiguous hpas merge again. A second map keyed by hpa gives the reverse
//   translation. Both cost O(log n) in the number of extents, so pinning 8 GiB is one extent, not 131072 entries.
//
// How DMA reaches the client's bytes
//   A device model's DMA to hpa H finds the extent whose frames contain H, hence the user address U it stands for,
//   and copies to/from U in this process (process_vm_readv/writev on ourselves, so that a page the client unmapped
//   behind our back gives EFAULT rather than SIGSEGV; plain memcpy if the kernel refuses those calls). The copy runs
//   under the pinner's shared lock, so the pins (and the hpa -> ua relation) cannot change under it.
//
// Faulting in: madvise(MADV_POPULATE_WRITE/READ) (Linux 5.14+); without it, /proc/self/maps is checked for
// coverage and permissions, then every 4 KiB page is touched. An unmapped range, a read-only mapping (for a write
// pin), or a range overlapping a special mapping (declared with add_special_mapping: the model's PFN-mapped GPU RAM,
// ATSD and BAR mmaps, which GUP refuses as VM_PFNMAP) gives EFAULT, with nothing pinned: unlike the kernel's gup,
// a pin is all or nothing. Special mappings are checked before anything is touched (touching GPU RAM early is an HMI).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "base/errno.h"
#include "mm/frame_allocator.h"
#include "mm/page_shift_source.h"
#include "base/thread_annotations.h"

namespace nv2pt::mm {

struct PagePinnerOptions {
  std::vector<PhysRange> ram{{0, uint64_t{256} << 30}};
  std::shared_ptr<const PageShiftSource> page_shifts;  // null: ProcessPageShiftSource
};

class PagePinner {
 public:
  explicit PagePinner(PagePinnerOptions options = {});

  // From now on, pins take the path for kernels without MADV_POPULATE_WRITE (the permissions read from
  // /proc/self/maps, then every page touched), or no longer: the fuzzer switches between the two.
  void set_populate_fallback(bool on) { populate_fallback_.store(on, std::memory_order_relaxed); }
  PagePinner(const PagePinner&) = delete;
  PagePinner& operator=(const PagePinner&) = delete;

  // Pins [ua, ua + npages * 64K). EINVAL: ua not 64 KiB aligned, npages 0, or the range wraps. EFAULT: unmapped,
  // not writable (write = true), or overlapping a special mapping. ENOMEM: no free frames. On error nothing is pinned.
  Result<void> pin(uint64_t ua, uint64_t npages, bool write);
  // Drops one pin from each page. Unpinning a page that has no pin is a caller bug: nothing changes and
  // unbalanced_unpins() counts it.
  void unpin(uint64_t ua, uint64_t npages);

  // hpa of each pinned page [ua, ua + out.size() * 64K) into out. EFAULT if any page is not pinned.
  Result<void> hpas(uint64_t ua, std::span<uint64_t> out) const;
  std::optional<uint64_t> ua_to_hpa(uint64_t ua) const;  // keeps the offset within the page
  std::optional<uint64_t> hpa_to_ua(uint64_t hpa) const;  // keeps the offset within the page
  // Smallest backing page shift over the pinned pages [ua, ua + npages * 64K): 16, or a huge page shift when every
  // page is hugetlb-backed with aligned frames. EFAULT if any page is not pinned.
  Result<unsigned> page_shift(uint64_t ua, uint64_t npages) const;
  // Backing page shift of the pinned frame holding hpa (the kernel's compound page order), for the "contained" test.
  std::optional<unsigned> hpa_page_shift(uint64_t hpa) const;

  // Device-model DMA into pinned client memory. EFAULT (nothing copied) unless every byte is pinned RAM.
  Result<void> dma_read(uint64_t hpa, std::span<std::byte> out) const;
  Result<void> dma_write(uint64_t hpa, std::span<const std::byte> in) const;

  // User ranges that are PFN-mapped in the model (GPU RAM, ATSD, BAR mmaps): pin() refuses them. EINVAL if the
  // range is empty, wraps, or overlaps another special mapping; remove: EINVAL unless exactly one that was added.
  Result<void> add_special_mapping(uint64_t ua, uint64_t len);
  Result<void> remove_special_mapping(uint64_t ua, uint64_t len);
  bool is_special(uint64_t ua, uint64_t len) const;

  // State for reports and the invariant checker.
  uint64_t pin_count(uint64_t ua) const;  // pins of the page holding ua
  uint64_t pinned_pages() const;          // distinct pages with at least one pin
  uint64_t free_frames() const;
  uint64_t total_frames() const;
  size_t extent_count() const;
  uint64_t unbalanced_unpins() const { return unbalanced_unpins_.load(std::memory_order_relaxed); }
  std::span<const PhysRange> ram() const;  // as trimmed to 64 KiB frames

 private:
  struct Extent {
    uint64_t end;   // exclusive user address
    uint64_t hpa;   // hpa of the first page
    uint64_t pins;  // every page of the extent has this many
    unsigned shift;  // backing page shift the frames honour
  };
  using ExtentMap = std::map<uint64_t, Extent>;  // start ua -> extent; extents never overlap

  Result<void> populate(uint64_t ua, uint64_t len, bool write) const;
  bool overlaps_special(uint64_t ua, uint64_t end) const NV2PT_REQUIRES_SHARED(mu_);
  ExtentMap::const_iterator extent_at(uint64_t ua) const NV2PT_REQUIRES_SHARED(mu_);
  const std::pair<const uint64_t, Extent>* extent_of_hpa(uint64_t hpa) const NV2PT_REQUIRES_SHARED(mu_);
  bool covered(uint64_t ua, uint64_t end) const NV2PT_REQUIRES_SHARED(mu_);
  void split_at(uint64_t ua) NV2PT_REQUIRES(mu_);
  void merge_around(uint64_t ua, uint64_t end) NV2PT_REQUIRES(mu_);
  void insert_extent(uint64_t start, const Extent& e) NV2PT_REQUIRES(mu_);
  ExtentMap::iterator erase_extent(ExtentMap::iterator it) NV2PT_REQUIRES(mu_);
  // Checks [hpa, hpa + len) is pinned RAM, then calls copy(ua, offset_in_buffer, bytes) per piece.
  template <class Copy>
  Result<void> for_each_dma_piece(uint64_t hpa, size_t len, Copy&& copy) const NV2PT_REQUIRES_SHARED(mu_);

  const std::shared_ptr<const PageShiftSource> page_shifts_;
  std::atomic<bool> populate_fallback_{false};

  mutable SharedMutex mu_;
  FrameAllocator frames_ NV2PT_GUARDED_BY(mu_);
  ExtentMap extents_ NV2PT_GUARDED_BY(mu_);
  std::map<uint64_t, uint64_t> by_hpa_ NV2PT_GUARDED_BY(mu_);   // extent hpa -> extent start ua
  std::map<uint64_t, uint64_t> special_ NV2PT_GUARDED_BY(mu_);  // start ua -> end
  uint64_t pinned_pages_ NV2PT_GUARDED_BY(mu_) = 0;
  std::atomic<uint64_t> unbalanced_unpins_{0};
};

}  // namespace nv2pt::mm
