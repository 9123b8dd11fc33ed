// The backing page size of user memory: 64 KiB for ordinary pages in the model, larger for hugetlb pages.
//
// The kernel asks the page itself (PageHuge + compound order). Here the pinner asks a PageShiftSource, and only when
// a pinned range is naturally aligned to more than 64 KiB (otherwise no IOMMU page larger than 64 KiB can use it).
// The default reads the process's own VMAs; tests inject a FixedPageShiftSource to present "2 MiB hugetlb" memory
// without real huge pages.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "base/thread_annotations.h"

namespace nv2pt::mm {

// [start, end) of user address space backed by pages of 2^shift bytes.
struct ShiftRun {
  uint64_t start;
  uint64_t end;
  unsigned shift;
};

class PageShiftSource {
 public:
  virtual ~PageShiftSource() = default;
  // Runs inside [ua, ua+len), in address order, not overlapping; addresses no run covers have 64 KiB pages.
  // Shifts below 16 (x86's 4 KiB) are reported as 16: the model's smallest page is 64 KiB.
  virtual std::vector<ShiftRun> page_shifts(uint64_t ua, uint64_t len) const = 0;
};

// The real process: /proc/self/maps first (cheap); only if a VMA in the range looks like hugetlb (an anon_hugepage
// mapping, or a file on hugetlbfs) is /proc/self/smaps read for its KernelPageSize (smaps walks page tables, so it
// is slow for a big process).
class ProcessPageShiftSource final : public PageShiftSource {
 public:
  std::vector<ShiftRun> page_shifts(uint64_t ua, uint64_t len) const override;
};

// Fixed answers for tests: set(ua, len, 21) makes [ua, ua+len) "2 MiB hugetlb".
class FixedPageShiftSource final : public PageShiftSource {
 public:
  void set(uint64_t ua, uint64_t len, unsigned shift);
  void clear();
  std::vector<ShiftRun> page_shifts(uint64_t ua, uint64_t len) const override;

 private:
  mutable Mutex mu_;
  std::map<uint64_t, ShiftRun> runs_ NV2PT_GUARDED_BY(mu_);  // start -> run
};

}  // namespace nv2pt::mm
