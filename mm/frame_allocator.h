// Host physical frames of the model's RAM, handed out to pinned user pages (see page_pinner.h).
//
// A free-extent map (base -> end) over the RAM ranges, first fit from the lowest address, so that a contiguous pin
// gets one contiguous frame run and freed frames are reused first. Not thread-safe: the owner (PagePinner) locks.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <vector>

namespace nv2pt::mm {

// [base, base + size) of host physical address space.
struct PhysRange {
  uint64_t base;
  uint64_t size;
};

// `pages` 64 KiB frames starting at `hpa`.
struct FrameRun {
  uint64_t hpa;
  uint64_t pages;
};

class FrameAllocator {
 public:
  // Ranges are trimmed inward to 64 KiB boundaries; overlapping or wrapping ranges are ignored past the first.
  explicit FrameAllocator(std::span<const PhysRange> ram);

  // One run of `pages` frames whose first hpa is aligned to 2^align_shift; nullopt if no free run fits.
  std::optional<uint64_t> allocate_contiguous(uint64_t pages, unsigned align_shift);
  // One run if one fits, else the lowest free runs that add up to `pages`; nullopt (and nothing taken) if there are
  // not that many free frames.
  std::optional<std::vector<FrameRun>> allocate(uint64_t pages);
  // Gives frames back, merging with free neighbours. False (and nothing changed) if any of them is already free or
  // is not RAM: a bug in the caller.
  bool free(uint64_t hpa, uint64_t pages);

  bool is_ram(uint64_t hpa) const;
  uint64_t total_pages() const { return total_pages_; }
  uint64_t free_pages() const { return free_pages_; }
  std::span<const PhysRange> ram() const { return ram_; }

 private:
  void take(std::map<uint64_t, uint64_t>::iterator it, uint64_t start, uint64_t end);

  std::vector<PhysRange> ram_;
  std::map<uint64_t, uint64_t> free_;  // base -> end (exclusive), never adjacent, never overlapping
  uint64_t total_pages_ = 0;
  uint64_t free_pages_ = 0;
};

}  // namespace nv2pt::mm
