#include "kvm/guest_tce_table.h"

#include <algorithm>
#include <new>

#include "base/checked.h"
#include "kvm/stt_accounting.h"

namespace nv2pt::kvm {

Result<std::unique_ptr<GuestTceTable>> GuestTceTable::create(mm::AddressSpace& mm, const CreateSpaprTce64& args) {
  if (args.flags) return fail(kEINVAL);
  if (args.size == 0 || args.page_shift < 12 || args.page_shift > 34) return fail(kEINVAL);
  // kvm_vm_ioctl_create_spapr_tce: offset + size <= 2^64-1 >> page_shift (the sum checked too, it cannot wrap).
  const auto end = checked_add(args.offset, args.size);
  if (!end || *end > (~0ull >> args.page_shift)) return fail(kEINVAL);
  // Bounded above, so neither overflows; checked all the same since they size an allocation.
  const auto tce_pages = stt_tce_pages(args.size);
  const auto charge = stt_charged_pages(args.size);
  if (!tce_pages || !charge) return fail(kEINVAL);
  NV2PT_TRY(mm.locked_memory().charge(*charge));
  std::unique_ptr<GuestTceTable> t(new (std::nothrow) GuestTceTable(mm, args, *tce_pages, *charge));
  if (!t || !t->pages_) {
    if (!t) mm.locked_memory().uncharge(*charge);
    return fail(kENOMEM);
  }
  return t;
}

GuestTceTable::GuestTceTable(mm::AddressSpace& mm, const CreateSpaprTce64& args, uint64_t tce_pages,
                             uint64_t charged_pages)
    : mm_(mm),
      liobn_(args.liobn),
      page_shift_(args.page_shift),
      offset_(args.offset),
      size_(args.size),
      tce_pages_(tce_pages),
      charged_pages_(charged_pages),
      pages_(new (std::nothrow) std::atomic<uint64_t*>[tce_pages]()) {}

GuestTceTable::~GuestTceTable() {
  if (pages_) {
    for (uint64_t i = 0; i < tce_pages_; ++i) delete[] pages_[i].load();
  }
  mm_.locked_memory().uncharge(charged_pages_);
}

uint64_t GuestTceTable::get(uint64_t index) const {
  if (index >= size_) return 0;
  const uint64_t* page = pages_[index / kEntriesPerPage].load(std::memory_order_acquire);
  return page ? __atomic_load_n(&page[index % kEntriesPerPage], __ATOMIC_RELAXED) : 0;
}

Result<void> GuestTceTable::set(uint64_t index, uint64_t tce) {
  if (index >= size_) return fail(kEINVAL);
  std::atomic<uint64_t*>& slot = pages_[index / kEntriesPerPage];
  uint64_t* page = slot.load(std::memory_order_acquire);
  if (!page) {
    if (tce == 0) return {};  // a missing page reads as zeros already (kvmppc_tce_put)
    uint64_t* fresh = new (std::nothrow) uint64_t[kEntriesPerPage]();
    if (!fresh) return fail(kENOMEM);
    if (slot.compare_exchange_strong(page, fresh, std::memory_order_acq_rel)) {
      page = fresh;
      allocated_pages_.fetch_add(1, std::memory_order_relaxed);
    } else {
      delete[] fresh;  // another vCPU published first
    }
  }
  __atomic_store_n(&page[index % kEntriesPerPage], tce, __ATOMIC_RELAXED);
  return {};
}

std::vector<GuestTceTable::Attached> GuestTceTable::attached() const {
  std::lock_guard lock(mutex_);
  return attached_;
}

int GuestTceTable::Attached::refs() const {
  int n = 0;
  for (const auto& [group, refs] : group_refs) n += refs;
  return n;
}

void GuestTceTable::attach(std::shared_ptr<iommu::TceTable> table, int group_id) {
  std::lock_guard lock(mutex_);
  for (Attached& a : attached_) {
    if (a.table == table) {
      ++a.group_refs[group_id];  // the same hardware table again only adds a reference
      return;
    }
  }
  attached_.push_back({std::move(table), {{group_id, 1}}});
}

void GuestTceTable::detach_group(int group_id) {
  std::lock_guard lock(mutex_);
  // The kernel drops one reference per table of the group, so a group that attached the same table twice leaves it
  // attached after its DEL; every reference the group took goes here.
  for (Attached& a : attached_) a.group_refs.erase(group_id);
  std::erase_if(attached_, [](const Attached& a) { return a.group_refs.empty(); });
}

}  // namespace nv2pt::kvm
