#include "kvm/vm.h"

#include <algorithm>
#include <cstring>

#include "base/checked.h"
#include "base/host_page.h"
#include "iommu/registered_tce.h"
#include "iommu/tce.h"
#include "mm/client_memory.h"
#include "vfio/container.h"

namespace nv2pt::kvm {
namespace {

using iommu::DmaDirection;

constexpr uint64_t kMaxIndirect = 512;  // a 4 KiB list holds 512 TCEs

uint64_t tce_gpa(uint64_t tce) { return tce & ~iommu::kTcePermMask; }

}  // namespace

Vm::~Vm() {
  MutexLock lock(mutex_);
  tables_.clear();
  // kvm_vfio_destroy: the groups still added are let go.
  for (vfio::Group* group : groups_) {
    group->set_kvm(std::nullopt);
    group->put_external_user();
  }
}

Result<void> Vm::set_memory_region(uint32_t slot, uint64_t gpa, uint64_t size, uint64_t ua) {
  const WriteLock lock(slots_mutex_);
  if (size == 0) {
    slots_.erase(slot);
    return {};
  }
  if (!is_aligned(gpa, kHostPageSize) || !is_aligned(size, kHostPageSize) || !checked_add(gpa, size) ||
      !checked_add(ua, size))
    return fail(kEINVAL);
  for (const auto& [id, s] : slots_) {
    if (id != slot && ranges_overlap(s.gpa, s.size, gpa, size)) return fail(kEEXIST);
  }
  slots_[slot] = {gpa, size, ua};
  return {};
}

std::optional<uint64_t> Vm::gpa_to_ua(uint64_t gpa) const {
  const ReadLock lock(slots_mutex_);
  return translate(gpa);
}

std::optional<uint64_t> Vm::translate(uint64_t gpa) const {
  for (const auto& [id, s] : slots_) {
    if (gpa >= s.gpa && gpa - s.gpa < s.size) return s.ua + (gpa - s.gpa);
  }
  return std::nullopt;
}

Result<GuestTceTable*> Vm::create_tce_table(const CreateSpaprTce64& args) {
  MutexLock lock(mutex_);
  auto table = NV2PT_TRY(GuestTceTable::create(mm_, args));
  // The kernel checks the LIOBN after charging and allocating, then undoes both.
  if (tables_.count(args.liobn)) return fail(kEBUSY);
  GuestTceTable* raw = table.get();
  tables_[args.liobn] = std::move(table);
  return raw;
}

void Vm::release_tce_table(uint64_t liobn) {
  MutexLock lock(mutex_);
  tables_.erase(liobn);
}

GuestTceTable* Vm::tce_table(uint64_t liobn) const {
  MutexLock lock(mutex_);
  auto it = tables_.find(liobn);
  return it == tables_.end() ? nullptr : it->second.get();
}

Result<void> Vm::vfio_group_add(vfio::Group& group) {
  MutexLock lock(mutex_);
  // kvm_vfio_set_group holds the group first (EINVAL without a container), then looks for it.
  NV2PT_TRY(group.get_external_user());
  if (std::find(groups_.begin(), groups_.end(), &group) != groups_.end()) {
    group.put_external_user();
    return fail(kEEXIST);
  }
  groups_.push_back(&group);
  group.set_kvm(lpid_);
  return {};
}

Result<void> Vm::vfio_group_del(vfio::Group& group) {
  MutexLock lock(mutex_);
  auto it = std::find(groups_.begin(), groups_.end(), &group);
  if (it == groups_.end()) return fail(kENOENT);
  groups_.erase(it);
  group.set_kvm(std::nullopt);
  for (auto& [liobn, t] : tables_) t->detach_group(group.id());
  group.put_external_user();
  return {};
}

bool Vm::has_group(const vfio::Group& group) const {
  MutexLock lock(mutex_);
  return std::find(groups_.begin(), groups_.end(), &group) != groups_.end();
}

Result<void> Vm::vfio_set_spapr_tce(vfio::Group& group, uint64_t liobn) {
  if (!has_group(group)) return fail(kENOENT);
  GuestTceTable* stt = tce_table(liobn);
  if (!stt) return fail(kEINVAL);  // not a TCE table fd of this VM
  iommu::TableGroup* table_group = group.table_group();
  if (!table_group) return fail(kEFAULT);
  const std::shared_ptr<vfio::Container> container = group.container();
  if (!container) return fail(kEINVAL);
  const uint64_t guest_start = stt->offset() << stt->page_shift();
  const uint64_t guest_bytes = stt->size() << stt->page_shift();
  for (unsigned num = 0; num < iommu::kMaxWindows; ++num) {
    // Held like the kernel's table reference: the container may remove the window while the guest table lives.
    std::shared_ptr<iommu::TceTable> t = container->window_table(table_group->table(num));
    if (!t) continue;
    if (t->page_shift() <= stt->page_shift() && t->bus_start() == guest_start &&
        t->bus_end() - t->bus_start() >= guest_bytes) {
      stt->attach(std::move(t), group.id());
      return {};
    }
  }
  return fail(kEINVAL);
}

// --- hypercalls ---

long Vm::check_ioba(const GuestTceTable& stt, uint64_t ioba, uint64_t npages) const {
  const uint64_t page = 1ull << stt.page_shift();
  if (ioba & (page - 1)) return kHParameter;
  const uint64_t first = ioba >> stt.page_shift();
  if (first < stt.offset() || npages > stt.size() || first - stt.offset() > stt.size() - npages) return kHParameter;
  return kHSuccess;
}

long Vm::validate(const GuestTceTable& stt, uint64_t tce, std::optional<uint64_t> ua,
                  const mm::Registry::ReadGuard& guard) const {
  if (iommu::tce_direction(tce) == DmaDirection::kNone) return kHSuccess;  // clearing or poisoning: always fine
  if (tce_gpa(tce) & ((1ull << stt.page_shift()) - 1)) return kHTooHard;
  if (!ua) return kHTooHard;
  for (const GuestTceTable::Attached& a : stt.attached()) {
    mm::RegisteredRegion* region = guard.lookup(*ua, a.table->page_size());
    if (!region || !region->ua_to_hpa(*ua, a.table->page_shift())) return kHTooHard;
  }
  return kHSuccess;
}

long Vm::map_host_entry(iommu::TceTable& table, uint64_t index, uint64_t ua, DmaDirection dir,
                        const mm::Registry::ReadGuard& guard) {
  iommu::TceTable::Leaf cache = table.cache_leaf(index, true);
  if (!cache.entries) return kHTooHard;
  mm::RegisteredRegion* region = guard.lookup(ua, table.page_size());
  if (!region) return kHTooHard;
  auto hpa = region->ua_to_hpa(ua, table.page_shift());
  if (!hpa) return kHTooHard;
  if (!region->mapped_inc()) return kHTooHard;
  auto old = table.exchange(index, *hpa & ~(table.page_size() - 1), dir);
  if (!old) {
    region->mapped_dec();
    return kHTooHard;
  }
  const uint64_t old_ua = iommu::from_be(cache.entries->exchange(iommu::to_be(ua)));
  // The kernel ignores a failed lookup of the old entry's region here too (kvmppc_tce_iommu_do_map).
  if (old->direction != DmaDirection::kNone) {
    (void)iommu::put_registered_tce(guard, table.page_size(), old->direction, old_ua);
  }
  return kHSuccess;
}

long Vm::unmap_host_entry(iommu::TceTable& table, uint64_t index, const mm::Registry::ReadGuard& guard) {
  // A table without a user-address cache takes only a v1 container's MAP, which pinned the page itself; KVM has
  // nothing to give that pin back through, so the clear goes to userspace (its UNMAP unpins). The kernel clears
  // the TCE and succeeds, and the pin is never released (docs/kernel/kvm.md#do-unmap).
  if (!table.has_userspace_cache()) {
    return iommu::tce_direction(table.get(index)) == DmaDirection::kNone ? kHSuccess : kHTooHard;
  }
  auto old = table.exchange(index, 0, DmaDirection::kNone);
  if (!old || old->direction == DmaDirection::kNone) return kHSuccess;
  iommu::TceTable::Leaf cache = table.cache_leaf(index, false);
  if (!cache.entries) return kHSuccess;
  const uint64_t ua = iommu::from_be(cache.entries->exchange(0));
  return iommu::put_registered_tce(guard, table.page_size(), old->direction, ua) ? kHSuccess : kHTooHard;
}

long Vm::mirror(const GuestTceTable& stt, iommu::TceTable& table, uint64_t entry, uint64_t tce, uint64_t ua,
                const mm::Registry::ReadGuard& guard) {
  const unsigned shift = stt.page_shift() - table.page_shift();
  const uint64_t subpages = 1ull << shift;
  // Host entries are indexed from the hardware window's start; the guest's entry from the guest window's.
  const uint64_t first = ((stt.offset() + entry) << shift) - (table.bus_start() >> table.page_shift());
  const DmaDirection dir = iommu::tce_direction(tce);
  // The container's MAP/UNMAP may be writing the same entries: each entry and its cache word change as a pair.
  MutexLock updates(table.update_mutex());
  if (table.retired()) return kHSuccess;  // its window is gone: no hardware entry behind this guest table there
  if (dir == DmaDirection::kNone) {
    for (uint64_t i = 0; i < subpages; ++i) {
      if (long rc = unmap_host_entry(table, first + i, guard); rc != kHSuccess) return rc;
    }
    return kHSuccess;
  }
  for (uint64_t i = 0; i < subpages; ++i) {
    if (long rc = map_host_entry(table, first + i, ua + (i << table.page_shift()), dir, guard); rc != kHSuccess) {
      for (uint64_t j = 0; j < subpages; ++j) (void)unmap_host_entry(table, first + j, guard);
      return rc;
    }
  }
  return kHSuccess;
}

long Vm::h_put_tce(uint64_t liobn, uint64_t ioba, uint64_t tce) {
  GuestTceTable* stt = tce_table(liobn);
  if (!stt) return kHTooHard;
  if (long rc = check_ioba(*stt, ioba, 1); rc != kHSuccess) return rc;
  // Translated once and used under the slots' lock: a slot removed meanwhile waits for this call.
  const ReadLock slots(slots_mutex_);
  const std::optional<uint64_t> ua =
      iommu::tce_direction(tce) == DmaDirection::kNone ? std::nullopt : translate(tce_gpa(tce));
  const auto guard = mm_.registry().read();
  if (long rc = validate(*stt, tce, ua, guard); rc != kHSuccess) return rc;
  const uint64_t entry = (ioba >> stt->page_shift()) - stt->offset();
  for (const GuestTceTable::Attached& a : stt->attached()) {
    if (long rc = mirror(*stt, *a.table, entry, tce, ua.value_or(0), guard); rc != kHSuccess) return rc;
  }
  if (!stt->set(entry, tce)) return kHHardware;
  return kHSuccess;
}

long Vm::h_put_tce_indirect(uint64_t liobn, uint64_t ioba, uint64_t tce_list_gpa, uint64_t npages) {
  GuestTceTable* stt = tce_table(liobn);
  if (!stt) return kHTooHard;
  if (npages > kMaxIndirect) return kHParameter;
  if (tce_list_gpa & 0xfff) return kHParameter;
  if (long rc = check_ioba(*stt, ioba, npages); rc != kHSuccess) return rc;
  // Every translation is made and used under the slots' lock: a slot removed meanwhile waits for this call.
  const ReadLock slots(slots_mutex_);
  auto list_ua = translate(tce_list_gpa);
  if (!list_ua) return kHTooHard;
  std::vector<uint64_t> tces(npages);
  // As get_user: the slot may point at memory the client never mapped or cannot read.
  if (!mm::copy_from_client(tces.data(), *list_ua, npages * 8)) return kHTooHard;
  std::vector<std::optional<uint64_t>> uas(npages);
  for (uint64_t i = 0; i < npages; ++i) {
    tces[i] = iommu::from_be(tces[i]);
    uas[i] = translate(tce_gpa(tces[i]));
  }
  const auto guard = mm_.registry().read();
  // Every TCE is validated before any is applied: one bad entry changes nothing.
  for (uint64_t i = 0; i < npages; ++i) {
    if (long rc = validate(*stt, tces[i], uas[i], guard); rc != kHSuccess) return rc;
  }
  // kvmppc_h_put_tce_indirect translates every entry, one without permissions too: in no memory slot is
  // H_PARAMETER. The kernel has applied the entries before it by then; here none is.
  for (const std::optional<uint64_t>& ua : uas) {
    if (!ua) return kHParameter;
  }
  const uint64_t entry = (ioba >> stt->page_shift()) - stt->offset();
  for (uint64_t i = 0; i < npages; ++i) {
    // An entry without permissions unmaps (kvmppc_h_put_tce_indirect sent it down the map path:
    // docs/kernel/kvm.md#h_put_tce_indirect).
    for (const GuestTceTable::Attached& a : stt->attached()) {
      if (long rc = mirror(*stt, *a.table, entry + i, tces[i], *uas[i], guard); rc != kHSuccess) return rc;
    }
    if (!stt->set(entry + i, tces[i])) return kHHardware;
  }
  return kHSuccess;
}

long Vm::h_stuff_tce(uint64_t liobn, uint64_t ioba, uint64_t tce_value, uint64_t npages) {
  GuestTceTable* stt = tce_table(liobn);
  if (!stt) return kHTooHard;
  if (long rc = check_ioba(*stt, ioba, npages); rc != kHSuccess) return rc;
  if (tce_value & iommu::kTcePermMask) return kHParameter;  // only clearing or poisoning
  const auto guard = mm_.registry().read();
  const uint64_t entry = (ioba >> stt->page_shift()) - stt->offset();
  for (const GuestTceTable::Attached& a : stt->attached()) {
    for (uint64_t i = 0; i < npages; ++i) {
      if (long rc = mirror(*stt, *a.table, entry + i, 0, 0, guard); rc == kHTooHard) return rc;
    }
  }
  for (uint64_t i = 0; i < npages; ++i) {
    if (!stt->set(entry + i, tce_value)) return kHHardware;
  }
  return kHSuccess;
}

std::pair<long, uint64_t> Vm::h_get_tce(uint64_t liobn, uint64_t ioba) const {
  GuestTceTable* stt = tce_table(liobn);
  if (!stt) return {kHTooHard, 0};
  if (long rc = check_ioba(*stt, ioba, 1); rc != kHSuccess) return {rc, 0};
  return {kHSuccess, stt->get((ioba >> stt->page_shift()) - stt->offset())};
}

}  // namespace nv2pt::kvm
