// A guest's TCE table (KVM_CREATE_SPAPR_TCE_64, the kernel's "stt"): the raw TCEs the guest wrote for one LIOBN,
// kept in 64 KiB pages allocated on first write (v5.2+) but charged to locked memory in full at creation, and the
// hardware tables of the VFIO groups attached to it, where each guest TCE is mirrored as 2^(guest shift - host
// shift) host TCEs (v4.19 "small host pages backing large guest pages").
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "base/errno.h"
#include "iommu/tce_table.h"
#include "mm/address_space.h"

namespace nv2pt::kvm {

// struct kvm_create_spapr_tce_64 (powerpc's asm/kvm.h, not in the x86 headers).
struct CreateSpaprTce64 {
  uint64_t liobn;
  uint32_t page_shift;
  uint32_t flags;
  uint64_t offset;  // in IOMMU pages
  uint64_t size;    // in IOMMU pages
};

class GuestTceTable {
 public:
  // EINVAL: flags != 0, size 0, page_shift outside 12..34, or offset + size past 2^64-1 >> page_shift. ENOMEM: the
  // locked-memory charge (or the page array) cannot be had.
  static Result<std::unique_ptr<GuestTceTable>> create(mm::AddressSpace& mm, const CreateSpaprTce64& args);
  ~GuestTceTable();  // gives the charge back

  uint64_t liobn() const { return liobn_; }
  unsigned page_shift() const { return page_shift_; }
  uint64_t offset() const { return offset_; }  // first entry, in guest IOMMU pages
  uint64_t size() const { return size_; }      // entries
  uint64_t charged_pages() const { return charged_pages_; }
  uint64_t allocated_pages() const { return allocated_pages_.load(std::memory_order_relaxed); }

  // Entry index relative to offset(). get(): 0 for a page never written.
  uint64_t get(uint64_t index) const;
  // Stores a raw guest TCE, allocating its page (published with CAS: two vCPUs racing get one page); a zero TCE
  // into a missing page allocates nothing. ENOMEM.
  Result<void> set(uint64_t index, uint64_t tce);

  // Hardware tables attached through KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE, each with the references the groups took
  // on it: groups sharing a container share its tables, and each keeps its own (kvm_spapr_tce_attach_iommu_group).
  struct Attached {
    std::shared_ptr<iommu::TceTable> table;  // kept alive while attached, also after its window is removed
    std::map<int, int> group_refs;           // group id -> references that group took
    int refs() const;
  };
  std::vector<Attached> attached() const;
  void attach(std::shared_ptr<iommu::TceTable> table, int group_id);
  // KVM_DEV_VFIO_GROUP_DEL (kvm_spapr_tce_release_iommu_group): drops the group's references; a table stays
  // attached while another group holds one.
  void detach_group(int group_id);

 private:
  static constexpr uint64_t kEntriesPerPage = 65536 / 8;
  GuestTceTable(mm::AddressSpace& mm, const CreateSpaprTce64& args, uint64_t tce_pages, uint64_t charged_pages);

  mm::AddressSpace& mm_;
  const uint64_t liobn_;
  const unsigned page_shift_;
  const uint64_t offset_;
  const uint64_t size_;
  const uint64_t tce_pages_;  // length of pages_
  const uint64_t charged_pages_;
  std::unique_ptr<std::atomic<uint64_t*>[]> pages_;
  std::atomic<uint64_t> allocated_pages_{0};
  mutable std::mutex mutex_;
  std::vector<Attached> attached_;
};

}  // namespace nv2pt::kvm
