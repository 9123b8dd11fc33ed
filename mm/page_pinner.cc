#include "mm/page_pinner.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/checked.h"
#include "base/fault_injection.h"
#include "base/host_page.h"
#include "mm/client_memory.h"

namespace nv2pt::mm {

namespace {

// Does this kernel know MADV_POPULATE_WRITE (5.14+)? Probed once on a private page: EINVAL there means "unknown
// advice", while EINVAL on a client range means "no permission / incompatible mapping".
bool kernel_has_populate() {
  static const bool has = [] {
    void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return false;
    bool ok = madvise(p, 4096, MADV_POPULATE_WRITE) == 0;
    munmap(p, 4096);
    return ok;
  }();
  return has;
}

// Fallback check: every byte of [ua, end) is in a VMA with the needed permissions. /proc/self/maps is read in
// blocks and parsed in place, not through a stream: a process under a sanitizer has thousands of mappings, and the
// lines come in address order, so the read stops at the first line past the range.
bool maps_allow(uint64_t ua, uint64_t end, bool write) {
  const int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[16384];  // more than a line: an address range, fields and a path of at most PATH_MAX
  size_t begin = 0, have = 0;  // the unparsed bytes are buf[begin, have)
  uint64_t next = ua;          // first address not yet shown to be covered
  bool hole = false;
  while (next < end && !hole) {
    char* line = buf + begin;
    char* nl = static_cast<char*>(std::memchr(line, '\n', have - begin));
    if (!nl) {
      std::memmove(buf, line, have - begin);
      have -= begin;
      begin = 0;
      if (have == sizeof buf) break;  // a line longer than any maps line: give up
      const ssize_t n = read(fd, buf + have, sizeof buf - have);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // the end (every line ends in a newline) or an error: what was not covered stays so
      have += static_cast<size_t>(n);
      continue;
    }
    *nl = '\0';
    begin = static_cast<size_t>(nl + 1 - buf);
    char* field;
    const uint64_t start = std::strtoull(line, &field, 16);
    if (*field != '-') continue;
    const uint64_t vend = std::strtoull(field + 1, &field, 16);
    if (*field != ' ' || field[1] == '\0' || field[2] == '\0') continue;
    if (vend <= next) continue;
    const char* perms = field + 1;
    if (start > next || perms[0] != 'r' || (write && perms[1] != 'w')) hole = true;  // a hole or no permission
    else next = vend;
  }
  close(fd);
  return !hole && next >= end;
}

}  // namespace

PagePinner::PagePinner(PagePinnerOptions options)
    : page_shifts_(options.page_shifts ? std::move(options.page_shifts)
                                       : std::make_shared<ProcessPageShiftSource>()),
      frames_(options.ram) {}

Result<void> PagePinner::populate(uint64_t ua, uint64_t len, bool write) const {
  if (!populate_fallback_.load(std::memory_order_relaxed) && kernel_has_populate()) {
    for (;;) {
      if (madvise(reinterpret_cast<void*>(ua), len, write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ) == 0) return {};
      if (errno == EINTR || errno == EAGAIN) continue;
      return fail(kEFAULT);  // ENOMEM: unmapped; EINVAL: no permission or VM_PFNMAP/VM_IO; EFAULT/EHWPOISON
    }
  }
  const uint64_t end = ua + len;
  if (!maps_allow(ua, end, write)) return fail(kEFAULT);
  // Fault every real page in; an atomic add of 0 forces a write fault without changing what the client stored.
  for (uint64_t a = ua; a < end; a += 4096) {
    auto* p = reinterpret_cast<uint8_t*>(a);
    if (write)
      __atomic_fetch_add(p, 0, __ATOMIC_RELAXED);
    else
      (void)*reinterpret_cast<volatile uint8_t*>(p);
  }
  return {};
}

bool PagePinner::overlaps_special(uint64_t ua, uint64_t end) const {
  auto it = special_.lower_bound(end);  // first mapping starting at or after end: cannot overlap
  if (it == special_.begin()) return false;
  --it;
  return it->second > ua;
}

bool PagePinner::is_special(uint64_t ua, uint64_t len) const {
  auto end = checked_add(ua, len);
  if (!end) return false;
  ReadLock lock(mu_);
  return overlaps_special(ua, *end);
}

Result<void> PagePinner::add_special_mapping(uint64_t ua, uint64_t len) {
  auto end = checked_add(ua, len);
  if (!end || len == 0) return fail(kEINVAL);
  WriteLock lock(mu_);
  if (overlaps_special(ua, *end)) return fail(kEINVAL);
  special_.emplace(ua, *end);
  return {};
}

Result<void> PagePinner::remove_special_mapping(uint64_t ua, uint64_t len) {
  WriteLock lock(mu_);
  auto it = special_.find(ua);
  if (it == special_.end() || it->second - ua != len) return fail(kEINVAL);
  special_.erase(it);
  return {};
}

PagePinner::ExtentMap::const_iterator PagePinner::extent_at(uint64_t ua) const {
  auto it = extents_.upper_bound(ua);
  if (it == extents_.begin()) return extents_.end();
  --it;
  return it->second.end > ua ? it : extents_.end();
}

bool PagePinner::covered(uint64_t ua, uint64_t end) const {
  auto it = extent_at(ua);
  uint64_t next = ua;
  for (; it != extents_.end() && next < end; ++it) {
    if (it->first > next) return false;  // hole
    next = it->second.end;
  }
  return next >= end;
}

void PagePinner::insert_extent(uint64_t start, const Extent& e) {
  extents_.emplace(start, e);
  by_hpa_.emplace(e.hpa, start);
}

PagePinner::ExtentMap::iterator PagePinner::erase_extent(ExtentMap::iterator it) {
  by_hpa_.erase(it->second.hpa);
  return extents_.erase(it);
}

void PagePinner::split_at(uint64_t ua) {
  auto it = extents_.upper_bound(ua);
  if (it == extents_.begin()) return;
  --it;
  Extent& e = it->second;
  if (it->first == ua || e.end <= ua) return;  // already a boundary, or ua not inside
  Extent tail{e.end, e.hpa + (ua - it->first), e.pins, e.shift};
  e.end = ua;
  insert_extent(ua, tail);
}

void PagePinner::merge_around(uint64_t ua, uint64_t end) {
  auto it = extents_.lower_bound(ua);
  if (it != extents_.begin()) --it;
  while (it != extents_.end() && it->first <= end) {
    auto next = std::next(it);
    if (next == extents_.end()) break;
    Extent& a = it->second;
    const Extent& b = next->second;
    if (a.end == next->first && a.pins == b.pins && a.shift == b.shift && a.hpa + (a.end - it->first) == b.hpa) {
      a.end = b.end;
      erase_extent(next);
      continue;  // try the new neighbour too
    }
    it = next;
  }
}

Result<void> PagePinner::pin(uint64_t ua, uint64_t npages, bool write) {
  auto len = checked_shl(npages, kHostPageShift);
  if (!len || npages == 0 || !is_aligned(ua, kHostPageSize)) return fail(kEINVAL);
  auto end = checked_add(ua, *len);
  if (!end) return fail(kEINVAL);

  {
    ReadLock lock(mu_);  // before touching anything: GPU RAM must not be faulted in
    if (overlaps_special(ua, *end)) return fail(kEFAULT);
  }
  NV2PT_TRY(populate(ua, *len, write));
  // Huge pages matter only to a range that an IOMMU page larger than 64 KiB could cover.
  std::vector<ShiftRun> huge;
  if (natural_shift(ua | *len) > kHostPageShift) huge = page_shifts_->page_shifts(ua, *len);

  WriteLock lock(mu_);
  if (overlaps_special(ua, *end)) return fail(kEFAULT);

  // Pages not pinned yet, cut into pieces of one backing shift each.
  struct Piece {
    uint64_t start, end;
    unsigned shift;
  };
  std::vector<Piece> pieces;
  auto add_gap = [&](uint64_t a, uint64_t b) {
    for (const ShiftRun& run : huge) {
      if (run.end <= a || run.start >= b || run.shift <= kHostPageShift) continue;
      const uint64_t size = uint64_t{1} << run.shift;
      // Only whole huge pages inside this gap can get aligned frames; the rest is treated as 64 KiB pages.
      uint64_t hs = align_up(std::max(a, run.start), size).value_or(UINT64_MAX), he = align_down(std::min(b, run.end), size);
      if (hs >= he) continue;
      if (a < hs) pieces.push_back({a, hs, kHostPageShift});
      pieces.push_back({hs, he, run.shift});
      a = he;
    }
    if (a < b) pieces.push_back({a, b, kHostPageShift});
  };
  uint64_t next = ua;
  // From the extent holding ua or, when ua is not pinned, the next one: extents further in are pinned already.
  auto first = extents_.upper_bound(ua);
  if (first != extents_.begin() && std::prev(first)->second.end > ua) --first;
  for (auto it = first; it != extents_.end() && it->first < *end; ++it) {
    if (it->first > next) add_gap(next, it->first);
    next = it->second.end;
  }
  if (next < *end) add_gap(next, *end);

  // Take every frame first, so that running out changes nothing.
  if (!pieces.empty() && should_fail_allocation()) return fail(kENOMEM);
  struct NewExtent {
    uint64_t start;
    Extent e;
  };
  std::vector<NewExtent> fresh;
  for (const Piece& p : pieces) {
    const uint64_t pages = (p.end - p.start) >> kHostPageShift;
    if (p.shift > kHostPageShift) {
      if (auto hpa = frames_.allocate_contiguous(pages, p.shift)) {
        fresh.push_back({p.start, {p.end, *hpa, 1, p.shift}});
        continue;
      }
    }
    auto runs = frames_.allocate(pages);
    if (!runs) {
      for (const NewExtent& n : fresh) frames_.free(n.e.hpa, (n.e.end - n.start) >> kHostPageShift);
      return fail(kENOMEM);
    }
    uint64_t at = p.start;
    for (const FrameRun& r : *runs) {
      const uint64_t run_end = at + (r.pages << kHostPageShift);
      fresh.push_back({at, {run_end, r.hpa, 1, kHostPageShift}});
      at = run_end;
    }
  }

  split_at(ua);
  split_at(*end);
  for (auto it = extents_.lower_bound(ua); it != extents_.end() && it->first < *end; ++it) ++it->second.pins;
  for (const NewExtent& n : fresh) {
    insert_extent(n.start, n.e);
    pinned_pages_ += (n.e.end - n.start) >> kHostPageShift;
  }
  merge_around(ua, *end);
  return {};
}

void PagePinner::unpin(uint64_t ua, uint64_t npages) {
  auto len = checked_shl(npages, kHostPageShift);
  auto end = len ? checked_add(ua, *len) : std::nullopt;
  WriteLock lock(mu_);
  if (!end || npages == 0 || !is_aligned(ua, kHostPageSize) || !covered(ua, *end)) {
    unbalanced_unpins_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  split_at(ua);
  split_at(*end);
  for (auto it = extents_.lower_bound(ua); it != extents_.end() && it->first < *end;) {
    if (--it->second.pins > 0) {
      ++it;
      continue;
    }
    const uint64_t pages = (it->second.end - it->first) >> kHostPageShift;
    frames_.free(it->second.hpa, pages);
    pinned_pages_ -= pages;
    it = erase_extent(it);
  }
  merge_around(ua, *end);
}

Result<void> PagePinner::hpas(uint64_t ua, std::span<uint64_t> out) const {
  if (out.empty()) return {};
  auto len = checked_shl(out.size(), kHostPageShift);
  auto end = len ? checked_add(ua, *len) : std::nullopt;
  if (!end || !is_aligned(ua, kHostPageSize)) return fail(kEINVAL);
  ReadLock lock(mu_);
  if (!covered(ua, *end)) return fail(kEFAULT);
  size_t i = 0;
  for (auto it = extent_at(ua); it != extents_.end() && it->first < *end; ++it) {
    const uint64_t from = std::max(it->first, ua), to = std::min(it->second.end, *end);
    for (uint64_t a = from; a < to; a += kHostPageSize) out[i++] = it->second.hpa + (a - it->first);
  }
  return {};
}

std::optional<uint64_t> PagePinner::ua_to_hpa(uint64_t ua) const {
  ReadLock lock(mu_);
  auto it = extent_at(ua);
  if (it == extents_.end()) return std::nullopt;
  return it->second.hpa + (ua - it->first);
}

const std::pair<const uint64_t, PagePinner::Extent>* PagePinner::extent_of_hpa(uint64_t hpa) const {
  auto it = by_hpa_.upper_bound(hpa);
  if (it == by_hpa_.begin()) return nullptr;
  --it;
  const auto& ext = *extents_.find(it->second);
  if (hpa - ext.second.hpa >= ext.second.end - ext.first) return nullptr;
  return &ext;
}

std::optional<uint64_t> PagePinner::hpa_to_ua(uint64_t hpa) const {
  ReadLock lock(mu_);
  auto* ext = extent_of_hpa(hpa);
  if (!ext) return std::nullopt;
  return ext->first + (hpa - ext->second.hpa);
}

Result<unsigned> PagePinner::page_shift(uint64_t ua, uint64_t npages) const {
  auto len = checked_shl(npages, kHostPageShift);
  auto end = len ? checked_add(ua, *len) : std::nullopt;
  if (!end || npages == 0) return fail(kEINVAL);
  ReadLock lock(mu_);
  if (!covered(ua, *end)) return fail(kEFAULT);
  unsigned shift = 64;
  for (auto it = extent_at(ua); it != extents_.end() && it->first < *end; ++it)
    shift = std::min(shift, it->second.shift);
  return shift;
}

std::optional<unsigned> PagePinner::hpa_page_shift(uint64_t hpa) const {
  ReadLock lock(mu_);
  auto* ext = extent_of_hpa(hpa);
  if (!ext) return std::nullopt;
  return ext->second.shift;
}

template <class Copy>
Result<void> PagePinner::for_each_dma_piece(uint64_t hpa, size_t len, Copy&& copy) const {
  auto end = checked_add(hpa, len);
  if (!end) return fail(kEFAULT);
  for (int pass = 0; pass < 2; ++pass) {  // pass 0 checks everything, pass 1 copies: no partial DMA on EFAULT
    uint64_t at = hpa;
    while (at < *end) {
      auto* ext = extent_of_hpa(at);
      if (!ext) return fail(kEFAULT);
      const uint64_t ext_hpa_end = ext->second.hpa + (ext->second.end - ext->first);
      const uint64_t n = std::min(*end, ext_hpa_end) - at;
      if (pass == 1) NV2PT_TRY(copy(ext->first + (at - ext->second.hpa), at - hpa, n));
      at += n;
    }
  }
  return {};
}

Result<void> PagePinner::dma_read(uint64_t hpa, std::span<std::byte> out) const {
  ReadLock lock(mu_);
  return for_each_dma_piece(hpa, out.size(), [&](uint64_t ua, uint64_t off, uint64_t n) -> Result<void> {
    return copy_from_client(out.data() + off, ua, n);
  });
}

Result<void> PagePinner::dma_write(uint64_t hpa, std::span<const std::byte> in) const {
  ReadLock lock(mu_);
  return for_each_dma_piece(hpa, in.size(), [&](uint64_t ua, uint64_t off, uint64_t n) -> Result<void> {
    return copy_to_client(ua, in.data() + off, n);
  });
}

uint64_t PagePinner::pin_count(uint64_t ua) const {
  ReadLock lock(mu_);
  auto it = extent_at(ua);
  return it == extents_.end() ? 0 : it->second.pins;
}

uint64_t PagePinner::pinned_pages() const {
  ReadLock lock(mu_);
  return pinned_pages_;
}

uint64_t PagePinner::free_frames() const {
  ReadLock lock(mu_);
  return frames_.free_pages();
}

uint64_t PagePinner::total_frames() const {
  ReadLock lock(mu_);
  return frames_.total_pages();
}

size_t PagePinner::extent_count() const {
  ReadLock lock(mu_);
  return extents_.size();
}

std::span<const PhysRange> PagePinner::ram() const NV2PT_NO_THREAD_SAFETY_ANALYSIS {
  return frames_.ram();  // fixed at construction
}

}  // namespace nv2pt::mm
