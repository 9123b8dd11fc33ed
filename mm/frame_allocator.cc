#include "mm/frame_allocator.h"

#include "base/checked.h"
#include "base/host_page.h"

namespace nv2pt::mm {

FrameAllocator::FrameAllocator(std::span<const PhysRange> ram) {
  for (const PhysRange& r : ram) {
    auto base = align_up(r.base, kHostPageSize);
    auto end = checked_add(r.base, r.size);
    if (!base || !end) continue;
    uint64_t e = align_down(*end, kHostPageSize);
    if (e <= *base) continue;
    // Skip a range that overlaps one already taken (a topology error; the platform layer reports those).
    auto next = free_.lower_bound(*base);
    if (next != free_.end() && next->first < e) continue;
    if (next != free_.begin() && std::prev(next)->second > *base) continue;
    ram_.push_back({*base, e - *base});
    total_pages_ += (e - *base) >> kHostPageShift;
    free(*base, (e - *base) >> kHostPageShift);  // merges adjacent ranges
  }
  free_pages_ = total_pages_;
}

void FrameAllocator::take(std::map<uint64_t, uint64_t>::iterator it, uint64_t start, uint64_t end) {
  const uint64_t base = it->first, old_end = it->second;
  free_.erase(it);
  if (base < start) free_.emplace(base, start);
  if (end < old_end) free_.emplace(end, old_end);
  free_pages_ -= (end - start) >> kHostPageShift;
}

std::optional<uint64_t> FrameAllocator::allocate_contiguous(uint64_t pages, unsigned align_shift) {
  auto bytes = checked_shl(pages, kHostPageShift);
  if (!bytes || pages == 0) return std::nullopt;
  const uint64_t align = uint64_t{1} << std::max(align_shift, kHostPageShift);
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    auto start = align_up(it->first, align);
    if (!start) break;
    auto end = checked_add(*start, *bytes);
    if (!end || *end > it->second) continue;
    take(it, *start, *end);
    return *start;
  }
  return std::nullopt;
}

std::optional<std::vector<FrameRun>> FrameAllocator::allocate(uint64_t pages) {
  if (pages == 0) return std::vector<FrameRun>{};
  if (pages > free_pages_) return std::nullopt;
  if (auto hpa = allocate_contiguous(pages, kHostPageShift)) return std::vector<FrameRun>{{*hpa, pages}};
  std::vector<FrameRun> runs;
  uint64_t left = pages;
  while (left) {  // free_pages_ >= pages, so the map cannot run out first
    auto it = free_.begin();
    uint64_t have = (it->second - it->first) >> kHostPageShift;
    uint64_t n = std::min(have, left);
    uint64_t start = it->first;
    take(it, start, start + (n << kHostPageShift));
    runs.push_back({start, n});
    left -= n;
  }
  return runs;
}

bool FrameAllocator::free(uint64_t hpa, uint64_t pages) {
  auto bytes = checked_shl(pages, kHostPageShift);
  if (!bytes) return false;
  auto end = checked_add(hpa, *bytes);
  if (!end || pages == 0 || !is_aligned(hpa, kHostPageSize)) return false;
  // Every frame must be RAM: [hpa, end) inside one RAM range.
  bool in_ram = false;
  for (const PhysRange& r : ram_) in_ram |= hpa >= r.base && *end <= r.base + r.size;
  if (!in_ram) return false;
  auto next = free_.lower_bound(hpa);
  if (next != free_.end() && next->first < *end) return false;  // double free
  auto prev = next == free_.begin() ? free_.end() : std::prev(next);
  if (prev != free_.end() && prev->second > hpa) return false;  // double free
  uint64_t base = hpa, new_end = *end;
  if (prev != free_.end() && prev->second == hpa) {
    base = prev->first;
    free_.erase(prev);
  }
  if (next != free_.end() && next->first == *end) {
    new_end = next->second;
    free_.erase(next);
  }
  free_.emplace(base, new_end);
  free_pages_ += pages;
  return true;
}

bool FrameAllocator::is_ram(uint64_t hpa) const {
  for (const PhysRange& r : ram_)
    if (hpa >= r.base && hpa - r.base < r.size) return true;
  return false;
}

}  // namespace nv2pt::mm
