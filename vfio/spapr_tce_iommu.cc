#include "vfio/spapr_tce_iommu.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "base/checked.h"
#include "base/fault_injection.h"
#include "base/host_page.h"
#include "base/log.h"
#include "iommu/registered_tce.h"

namespace nv2pt::vfio {
namespace {

using iommu::DmaDirection;
using iommu::TceTable;

// Locks the container's mutex for the lifetime of the guard.
using Lock = MutexLock;

// tce_page_is_contained: the whole IOMMU page must be backed. Device memory: the page lies inside the device
// window. Regular memory: the backing host pages are at least as large as the IOMMU page (in the model the
// region's page shift is the smallest backing page shift over its pages).
bool page_is_contained(const mm::Registry::ReadGuard& registry, const mm::RegisteredRegion& region, uint64_t hpa,
                       unsigned page_shift) {
  if (auto size = registry.is_devmem(hpa, page_shift)) return *size == (1ull << page_shift);
  return region.page_shift() >= page_shift;
}

Result<DmaDirection> direction_of(uint32_t flags) {
  const bool read = flags & VFIO_DMA_MAP_FLAG_READ;
  const bool write = flags & VFIO_DMA_MAP_FLAG_WRITE;
  if (read && write) return DmaDirection::kBidirectional;
  if (read) return DmaDirection::kToDevice;
  if (write) return DmaDirection::kFromDevice;
  return fail(kEINVAL);
}

}  // namespace

Result<std::unique_ptr<SpaprTceIommu>> SpaprTceIommu::open(unsigned long type, Options options) {
  if (type != VFIO_SPAPR_TCE_IOMMU && type != VFIO_SPAPR_TCE_v2_IOMMU) return fail(kEINVAL);
  const Version version = type == VFIO_SPAPR_TCE_v2_IOMMU ? Version::kV2 : Version::kV1;
  if (should_fail_allocation()) return fail(kENOMEM);  // tce_iommu_open's kzalloc
  return std::unique_ptr<SpaprTceIommu>(new SpaprTceIommu(version, options));
}

SpaprTceIommu::~SpaprTceIommu() {
  Lock lock(mutex_);
  while (!groups_.empty()) detach_group_locked(*groups_.front());
  for (unsigned slot = 0; slot < windows_.size(); ++slot) {
    if (windows_[slot].view) free_window_locked(slot);
  }
  if (mm_) {
    for (const mm::RegionRef& region : registrations_) {
      // EBUSY: another container's TCEs still map it. tce_iommu_release only warns; the region stays for good.
      if (!mm_->registry().put(region)) {
        region->mark_orphaned();
        log_line(fmt::format("vfio-spapr: released with region {:#x} still mapped by another container: it stays "
                             "registered", region->ua()));
      }
    }
    registrations_.clear();
    if (v1_locked_pages_) mm_->locked_memory().uncharge(v1_locked_pages_);
  }
}

// --- address-space binding (tce_iommu_mm_set) ---

Result<void> SpaprTceIommu::bind_mm(mm::AddressSpace& caller) {
  if (!mm_) {
    mm_ = &caller;
    return {};
  }
  return mm_ == &caller ? Result<void>{} : fail(kEPERM);
}

Result<void> SpaprTceIommu::check_mm(mm::AddressSpace& caller) const {
  return (mm_ && mm_ != &caller) ? fail(kEPERM) : Result<void>{};
}

// --- groups ---

Result<void> SpaprTceIommu::attach_group(Group& group) {
  Lock lock(mutex_);
  iommu::TableGroup* table_group = group.table_group();
  if (!table_group) return fail(kENODEV);
  if (!groups_.empty() && !table_group->ddw_capable()) return fail(kEBUSY);
  for (Group* g : groups_) {
    if (g == &group) return fail(kEBUSY);
    // The kernel compares the create_table ops: IODA2 PE groups and compound NPU groups cannot share a container.
    if (g->table_group()->ops() != table_group->ops()) return fail(kEPERM);
  }
  // The tce_iommu_group list node, allocated where tce_iommu_attach_group does: after the checks above, before the
  // v1/v2 ones below.
  if (should_fail_allocation()) return fail(kENOMEM);
  if (!table_group->ddw_capable()) {
    if (version_ == Version::kV2) return fail(kEPERM);
    // v1 takes the group's own 32-bit table.
    TceTable* table = table_group->legacy_table();
    if (!table) return fail(kEINVAL);
    windows_[0].view = table;
    windows_[0].table.reset();
    windows_[0].charged_pages = 0;
  } else {
    if (version_ == Version::kV1) return fail(kEPERM);
    table_group->take_ownership();
    for (unsigned slot = 0; slot < windows_.size(); ++slot) {
      if (!windows_[slot].view) continue;
      if (auto r = table_group->set_window(slot, windows_[slot].view); !r) {
        for (unsigned s = 0; s < windows_.size(); ++s) table_group->unset_window(s);
        table_group->release_ownership();
        return r;
      }
    }
    if (groups_.empty() && !windows_[0].view) default_window_pending_ = true;
  }
  // list_add: the newest group is first, the one GET_INFO and window creation ask and the first EEH_PE_OP reaches.
  groups_.insert(groups_.begin(), &group);
  return {};
}

void SpaprTceIommu::detach_group(Group& group) {
  Lock lock(mutex_);
  detach_group_locked(group);
}

void SpaprTceIommu::detach_group_locked(Group& group) {
  auto it = std::find(groups_.begin(), groups_.end(), &group);
  if (it == groups_.end()) return;  // the kernel only warns
  groups_.erase(it);
  iommu::TableGroup* table_group = group.table_group();
  if (!table_group->ddw_capable()) {
    // The group's own table goes back with every entry cleared and its pins dropped.
    if (windows_[0].view == table_group->legacy_table()) {
      clear_locked(*windows_[0].view, 0, windows_[0].view->size());
      windows_[0] = Window{};
    }
    return;
  }
  for (unsigned slot = 0; slot < windows_.size(); ++slot) {
    if (windows_[slot].view) table_group->unset_window(slot);
  }
  table_group->release_ownership();
  // The container keeps its tables and their charge; they are programmed again into the next group attached.
}

// --- windows ---

SpaprTceIommu::Window* SpaprTceIommu::find_window_locked(uint64_t bus_addr, unsigned* slot) {
  for (unsigned s = 0; s < windows_.size(); ++s) {
    if (windows_[s].view && windows_[s].view->contains(bus_addr)) {
      if (slot) *slot = s;
      return &windows_[s];
    }
  }
  return nullptr;
}

Result<void> SpaprTceIommu::create_default_window_locked() {
  if (!default_window_pending_) return {};
  Group* group = first_group();
  if (!group || !group->table_group()) return fail(kENODEV);
  NV2PT_TRY(create_window_locked(12, group->table_group()->properties().tce32_size, 1));
  default_window_pending_ = false;
  return {};
}

Result<uint64_t> SpaprTceIommu::create_window_locked(unsigned page_shift, uint64_t window_size, unsigned levels) {
  unsigned slot = 0;
  while (slot < windows_.size() && windows_[slot].view) ++slot;
  if (slot == windows_.size()) return fail(kENOSPC);
  Group* group = first_group();
  iommu::TableGroup* table_group = group ? group->table_group() : nullptr;
  if (!table_group) return fail(kEFAULT);
  if (page_shift >= 64 || !(table_group->properties().pgsizes & (1ull << page_shift))) return fail(kEINVAL);
  if (!table_group->ddw_capable()) return fail(kEPERM);
  const uint64_t charge_bytes = iommu::accounting_bytes(page_shift, window_size, levels);
  if (charge_bytes == 0) return fail(kEINVAL);
  const uint64_t charge_pages = charge_bytes >> kHostPageShift;
  NV2PT_TRY(mm_->locked_memory().charge(charge_pages));
  auto table = table_group->create_table(slot, page_shift, window_size, levels, options_.max_alloc_bytes);
  if (!table) {
    mm_->locked_memory().uncharge(charge_pages);  // tce_iommu_create_window keeps it; the model gives it back
    return fail(table.error());
  }
  for (size_t i = 0; i < groups_.size(); ++i) {
    if (auto r = groups_[i]->table_group()->set_window(slot, table->get()); !r) {
      for (size_t j = 0; j < i; ++j) groups_[j]->table_group()->unset_window(slot);
      mm_->locked_memory().uncharge(charge_pages);
      return fail(r.error());
    }
  }
  Window& w = windows_[slot];
  w.view = table->get();
  w.table = std::move(*table);
  w.charged_pages = charge_pages;
  return w.view->bus_start();
}

void SpaprTceIommu::free_window_locked(unsigned slot) {
  Window& w = windows_[slot];
  if (w.table) w.table->retire();  // KVM may hold it still: nothing more is written into it
  clear_locked(*w.view, 0, w.view->size());
  if (w.charged_pages && mm_) mm_->locked_memory().uncharge(w.charged_pages);
  windows_[slot] = Window{};
}

Result<void> SpaprTceIommu::create_window(mm::AddressSpace& caller, vfio_iommu_spapr_tce_create& create) {
  if (version_ != Version::kV2) return fail(kENOTTY);
  Lock lock(mutex_);
  NV2PT_TRY(bind_mm(caller));
  if (groups_.empty()) return fail(kENXIO);
  if (create.argsz < offsetofend(vfio_iommu_spapr_tce_create, start_addr)) return fail(kEINVAL);
  if (create.flags) return fail(kEINVAL);
  NV2PT_TRY(create_default_window_locked());
  create.start_addr = NV2PT_TRY(create_window_locked(create.page_shift, create.window_size, create.levels));
  return {};
}

Result<void> SpaprTceIommu::remove_window(mm::AddressSpace& caller, const vfio_iommu_spapr_tce_remove& remove) {
  if (version_ != Version::kV2) return fail(kENOTTY);
  Lock lock(mutex_);
  NV2PT_TRY(bind_mm(caller));
  if (groups_.empty()) return fail(kENXIO);
  if (remove.argsz < offsetofend(vfio_iommu_spapr_tce_remove, start_addr)) return fail(kEINVAL);
  if (remove.flags) return fail(kEINVAL);
  if (default_window_pending_ && remove.start_addr == 0) {
    default_window_pending_ = false;
    return {};
  }
  unsigned slot = 0;
  // Any address inside the window names it, as in tce_iommu_find_table (kept: harmless).
  if (!find_window_locked(remove.start_addr, &slot)) return fail(kEINVAL);
  for (Group* g : groups_) {
    if (!g->table_group()->ddw_capable()) return fail(kEPERM);
  }
  for (Group* g : groups_) g->table_group()->unset_window(slot);
  free_window_locked(slot);
  return {};
}

// --- info and EEH ---

Result<void> SpaprTceIommu::get_info(mm::AddressSpace& caller, vfio_iommu_spapr_tce_info& info) {
  Lock lock(mutex_);
  NV2PT_TRY(check_mm(caller));
  Group* group = first_group();
  if (!group || !group->table_group()) return fail(kENXIO);
  if (info.argsz < offsetofend(vfio_iommu_spapr_tce_info, dma32_window_size)) return fail(kEINVAL);
  const iommu::TableGroup::Properties& p = group->table_group()->properties();
  vfio_iommu_spapr_tce_info out{};
  out.argsz = info.argsz;
  out.dma32_window_start = static_cast<uint32_t>(p.tce32_start);
  out.dma32_window_size = static_cast<uint32_t>(p.tce32_size);
  if (version_ == Version::kV2 && p.max_dynamic_windows) {
    out.flags |= VFIO_IOMMU_SPAPR_INFO_DDW;
    out.ddw.pgsizes = p.pgsizes;
    out.ddw.max_dynamic_windows_supported = p.max_dynamic_windows;
    out.ddw.levels = p.max_levels;
  }
  // Only the part of the struct the caller's argsz covers is written back.
  const size_t len = info.argsz >= offsetofend(vfio_iommu_spapr_tce_info, ddw)
                         ? offsetofend(vfio_iommu_spapr_tce_info, ddw)
                         : offsetofend(vfio_iommu_spapr_tce_info, dma32_window_size);
  std::memcpy(&info, &out, len);
  return {};
}

Result<long> SpaprTceIommu::eeh_pe_op(mm::AddressSpace& caller, const vfio_eeh_pe_op& op) {
  std::vector<Group*> groups;
  {
    Lock lock(mutex_);
    NV2PT_TRY(check_mm(caller));
    groups = groups_;
  }
  // No groups: 0, as in the kernel (docs/kernel/eeh.md#pe-op; kept). Newest group first; the first non-zero result
  // ends the loop, a GET_STATE that is not NORMAL as well as an error (tce_iommu_ioctl).
  for (Group* g : groups) {
    if (op.argsz < offsetofend(vfio_eeh_pe_op, op) || op.flags) return fail(kEINVAL);
    if (op.op == VFIO_EEH_PE_INJECT_ERR && op.argsz < offsetofend(vfio_eeh_pe_op, err.mask)) return fail(kEINVAL);
    if (const long ret = NV2PT_TRY(g->eeh().op(op))) return ret;
  }
  return 0;
}

// --- v1 enable ---

Result<void> SpaprTceIommu::enable(mm::AddressSpace& caller) {
  if (version_ != Version::kV1) return fail(kENOTTY);
  Lock lock(mutex_);
  NV2PT_TRY(check_mm(caller));
  if (enabled_) return fail(kEBUSY);
  Group* group = first_group();
  if (!group || !group->table_group()) return fail(kENODEV);
  const uint64_t tce32_size = group->table_group()->properties().tce32_size;
  if (!tce32_size) return fail(kEPERM);
  NV2PT_TRY(bind_mm(caller));
  // Pins are not charged one by one in v1, so the whole 32-bit window is charged up front.
  const uint64_t pages = tce32_size >> kHostPageShift;
  NV2PT_TRY(mm_->locked_memory().charge(pages));
  v1_locked_pages_ = pages;
  enabled_ = true;
  return {};
}

Result<void> SpaprTceIommu::disable(mm::AddressSpace& caller) {
  if (version_ != Version::kV1) return fail(kENOTTY);
  Lock lock(mutex_);
  NV2PT_TRY(check_mm(caller));
  if (!enabled_) return {};
  enabled_ = false;
  if (mm_ && v1_locked_pages_) mm_->locked_memory().uncharge(v1_locked_pages_);
  v1_locked_pages_ = 0;
  return {};
}

// --- pre-registration (v2) ---

Result<void> SpaprTceIommu::register_memory(mm::AddressSpace& caller, const vfio_iommu_spapr_register_memory& reg) {
  if (version_ != Version::kV2) return fail(kENOTTY);
  Lock lock(mutex_);
  NV2PT_TRY(bind_mm(caller));
  if (reg.argsz < offsetofend(vfio_iommu_spapr_register_memory, size)) return fail(kEINVAL);
  if (reg.flags) return fail(kEINVAL);
  auto end = checked_add(reg.vaddr, reg.size);
  if (!is_aligned(reg.vaddr, kHostPageSize) || !is_aligned(reg.size, kHostPageSize) || !end) return fail(kEINVAL);
  const uint64_t entries = reg.size >> kHostPageShift;
  mm::Registry& registry = mm_->registry();
  mm::RegionRef region;
  if (auto existing = registry.get(reg.vaddr, entries)) {
    region = std::move(*existing);
    if (std::find(registrations_.begin(), registrations_.end(), region) != registrations_.end()) {
      (void)registry.put(region);
      return fail(kEBUSY);
    }
  } else {
    region = NV2PT_TRY(registry.add_regular(reg.vaddr, entries));
  }
  if (should_fail_allocation()) {  // the container's list node (tce_iommu_prereg)
    (void)registry.put(region);
    return fail(kENOMEM);
  }
  registrations_.push_back(std::move(region));
  enabled_ = true;  // permanently, as in the kernel
  return {};
}

Result<void> SpaprTceIommu::unregister_memory(mm::AddressSpace& caller,
                                              const vfio_iommu_spapr_register_memory& reg) {
  if (version_ != Version::kV2) return fail(kENOTTY);
  Lock lock(mutex_);
  if (!mm_) return fail(kEPERM);
  NV2PT_TRY(check_mm(caller));
  if (reg.argsz < offsetofend(vfio_iommu_spapr_register_memory, size)) return fail(kEINVAL);
  if (reg.flags) return fail(kEINVAL);
  if (!is_aligned(reg.vaddr, kHostPageSize) || !is_aligned(reg.size, kHostPageSize)) return fail(kEINVAL);
  mm::Registry& registry = mm_->registry();
  const mm::RegionRef region = NV2PT_TRY(registry.get(reg.vaddr, reg.size >> kHostPageShift));
  auto it = std::find(registrations_.begin(), registrations_.end(), region);
  // Drop the lookup's reference first, so the container's own put below sees the real count: the kernel drops it last,
  // so its put never reports EBUSY for a mapped region and the region leaks (docs/kernel/container.md#unregister).
  // Here: EBUSY, and the container keeps its reference.
  (void)registry.put(region);
  if (it == registrations_.end()) return fail(kENOENT);
  NV2PT_TRY(registry.put(region));
  registrations_.erase(it);
  return {};
}

// --- map / unmap ---

Result<void> SpaprTceIommu::map_dma(mm::AddressSpace& caller, const vfio_iommu_type1_dma_map& map) {
  Lock lock(mutex_);
  NV2PT_TRY(check_mm(caller));
  if (!enabled_) return fail(kEPERM);
  if (map.argsz < offsetofend(vfio_iommu_type1_dma_map, size)) return fail(kEINVAL);
  if (map.flags & ~(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)) return fail(kEINVAL);
  NV2PT_TRY(create_default_window_locked());
  Window* window = find_window_locked(map.iova, nullptr);
  if (!window) return fail(kENXIO);
  TceTable& table = *window->view;
  const uint64_t page = table.page_size();
  if (!is_aligned(map.size, page) || !is_aligned(map.vaddr, page)) return fail(kEINVAL);
  const DmaDirection dir = NV2PT_TRY(direction_of(map.flags));
  // iommu_tce_put_param_check returns 1 here and checks only the first page against the window: both refused
  // (docs/kernel/container.md#map-path).
  if (!is_aligned(map.iova, page)) return fail(kEINVAL);
  auto end = checked_add(map.iova, map.size);
  if (!end || *end > table.bus_end() || !checked_add(map.vaddr, map.size)) return fail(kEINVAL);
  const uint64_t entry = (map.iova - table.bus_start()) >> table.page_shift();
  const uint64_t pages = map.size >> table.page_shift();
  if (version_ == Version::kV2) return map_v2_locked(table, entry, map.vaddr, pages, dir);
  return map_v1_locked(table, entry, map.vaddr, pages, dir);
}

Result<void> SpaprTceIommu::map_v2_locked(TceTable& table, uint64_t entry, uint64_t vaddr, uint64_t pages,
                                          DmaDirection dir) {
  const unsigned shift = table.page_shift();
  const uint64_t page = table.page_size();
  const uint64_t perms = iommu::tce_permissions(dir);
  const auto guard = mm_->registry().read();
  mm::RegisteredRegion* region = nullptr;
  // TCEs written into `region` and not yet added to its mapped count: one atomic add per run, not per page. The
  // region cannot reach 0 meanwhile (put() needs the registry exclusively, and the guard holds it shared).
  uint64_t pending = 0;
  const auto flush = [&] {
    if (pending) region->mapped_add(pending);
    pending = 0;
  };
  UniqueMutexLock updates(table.update_mutex());
  uint64_t done = 0;
  uint64_t live = live_tces_locked();
  const bool near_limit = pages > options_.max_live_tces || live > options_.max_live_tces - pages;
  Errno error{0};
  while (done < pages && !error.value) {
    // One walk per leaf block, for the table and for its cache.
    TceTable::Leaf hw = table.hw_leaf(entry + done, pages - done, true);
    TceTable::Leaf cache = table.cache_leaf(entry + done, true);
    if (!hw.entries || !cache.entries) {  // tce_iommu_build_v2 does not check the cache slot
      error = kENOMEM;
      break;
    }
    const uint64_t run = std::min(hw.count, pages - done);
    uint64_t fresh_in_run = 0;
    uint64_t i = 0;
    for (; i < run; ++i) {
      const uint64_t ua = vaddr + (done + i) * page;
      if (!region || !region->contains(ua, page)) {
        if (region) flush();
        region = guard.lookup(ua, page);
        if (!region) {
          error = kEINVAL;
          break;
        }
        if (region->mapped() == 0) {  // being destroyed: tce_iommu_build_v2 stops and returns 0
          region = nullptr;
          error = kENXIO;
          break;
        }
      }
      auto hpa = region->ua_to_hpa(ua, shift);
      if (!hpa) {
        error = kEINVAL;
        break;
      }
      if (!page_is_contained(guard, *region, *hpa, shift)) {
        error = kEPERM;
        break;
      }
      // The load for the limit is needed only when this call could reach it.
      if (near_limit && live >= options_.max_live_tces &&
          !(iommu::from_be(hw.entries[i].load(std::memory_order_relaxed)) & iommu::kTcePermMask)) {
        error = kENOSPC;
        break;
      }
      const uint64_t old = iommu::from_be(iommu::swap_unshared(hw.entries[i], iommu::to_be(*hpa | perms)));
      // The cache word's old value matters only behind a valid TCE.
      const uint64_t old_ua =
          (old & iommu::kTcePermMask) ? iommu::from_be(cache.entries[i].load(std::memory_order_relaxed)) : 0;
      cache.entries[i].store(iommu::to_be(ua), std::memory_order_relaxed);
      ++pending;
      if (old & iommu::kTcePermMask) {
        flush();  // the old entry may point into `region` too: its count must be whole before it drops one
        (void)iommu::put_registered_tce(guard, page, iommu::tce_direction(old), old_ua);
      } else {
        ++fresh_in_run;
        ++live;
      }
    }
    table.count_live(static_cast<int64_t>(fresh_in_run));
    if (region) flush();
    done += i;
  }
  if (error.value) {
    // Undo the entries written so far; the mapping is all or nothing.
    updates.unlock();
    clear_locked(table, entry, done, &guard);
    return fail(error);
  }
  return {};
}

Result<void> SpaprTceIommu::map_v1_locked(TceTable& table, uint64_t entry, uint64_t vaddr, uint64_t pages,
                                          DmaDirection dir) {
  mm::PagePinner& pinner = mm_->pinner();
  const uint64_t page = table.page_size();
  for (uint64_t i = 0; i < pages; ++i) {
    // v1 pins each IOMMU page's host page as it maps it (tce_iommu_use_page).
    const uint64_t ua = vaddr + i * page;
    const uint64_t host_page = align_down(ua, kHostPageSize);
    Errno error{0};
    const bool fresh = !(table.get(entry + i) & iommu::kTcePermMask);
    if (fresh && live_tces_locked() >= options_.max_live_tces) {
      error = kENOSPC;
    } else if (!pinner.pin(host_page, 1, dir != DmaDirection::kToDevice)) {
      error = kEFAULT;
    } else {
      const uint64_t hpa = *pinner.ua_to_hpa(ua);
      if (pinner.hpa_page_shift(hpa).value_or(0) < table.page_shift()) {
        error = kEPERM;
      } else if (auto old = table.exchange(entry + i, hpa, dir); !old) {
        error = old.error();
      } else if (old->direction != DmaDirection::kNone) {
        drop_old_entry_v1(*old);
      }
      if (error.value) pinner.unpin(host_page, 1);
    }
    if (error.value) {
      clear_locked(table, entry, i);
      return fail(error);
    }
  }
  return {};
}

void SpaprTceIommu::drop_old_entry_v1(const TceTable::OldEntry& old) {
  if (auto ua = mm_->pinner().hpa_to_ua(old.hpa)) mm_->pinner().unpin(align_down(*ua, kHostPageSize), 1);
}

Result<void> SpaprTceIommu::unmap_dma(mm::AddressSpace& caller, const vfio_iommu_type1_dma_unmap& unmap) {
  Lock lock(mutex_);
  NV2PT_TRY(check_mm(caller));
  if (!enabled_) return fail(kEPERM);
  if (unmap.argsz < offsetofend(vfio_iommu_type1_dma_unmap, size)) return fail(kEINVAL);
  if (unmap.flags) return fail(kEINVAL);
  NV2PT_TRY(create_default_window_locked());
  Window* window = find_window_locked(unmap.iova, nullptr);
  if (!window) return fail(kENXIO);
  TceTable& table = *window->view;
  if (!is_aligned(unmap.size, table.page_size())) return fail(kEINVAL);
  if (!is_aligned(unmap.iova, table.page_size())) return fail(kEINVAL);  // iommu_tce_clear_param_check returns 1
  auto end = checked_add(unmap.iova, unmap.size);
  if (!end || *end > table.bus_end()) return fail(kEINVAL);  // the kernel clears past the window
  clear_locked(table, (unmap.iova - table.bus_start()) >> table.page_shift(), unmap.size >> table.page_shift());
  return {};
}

void SpaprTceIommu::clear_locked(TceTable& table, uint64_t entry, uint64_t pages,
                                 const mm::Registry::ReadGuard* held) {
  const bool v2 = version_ == Version::kV2;
  if (!mm_) {
    table.clear(entry, pages);  // never bound to an address space: nothing was mapped through one
    return;
  }
  if (v2 && !held) {
    const auto guard = mm_->registry().read();
    clear_locked(table, entry, pages, &guard);
    return;
  }
  MutexLock updates(table.update_mutex());
  // Valid entries left anywhere in the table (stable under the update lock): once they are all cleared the rest of
  // the range holds none, so freeing a sparse 2 GiB default window reads no more than its last valid entry.
  uint64_t live = table.live_entries();
  const uint64_t page = table.page_size();
  // v2: the region the last cleared entries pointed into, and how many of them are not yet taken off its mapped
  // count (one atomic per run of the same region, as in map_v2_locked).
  mm::RegisteredRegion* region = nullptr;
  uint64_t pending = 0;
  const auto flush = [&] {
    if (pending) region->mapped_sub(pending);
    pending = 0;
  };
  while (pages && live) {
    // Where the cache has no leaf, the table has no valid entry either (invariant 12): skip the whole block.
    TceTable::Leaf hw = table.hw_leaf(entry, pages, false);
    TceTable::Leaf cache = v2 ? table.cache_leaf(entry, false) : hw;
    const uint64_t run = std::min(hw.count, pages);
    if (hw.entries && cache.entries) {
      uint64_t cleared = 0;
      for (uint64_t i = 0; i < run && cleared < live; ++i) {
        // An empty entry needs no store: sparse windows are cleared at the cost of a read.
        if (!hw.entries[i].load(std::memory_order_relaxed)) continue;
        const uint64_t old = iommu::from_be(iommu::swap_unshared(hw.entries[i], 0));
        if (!(old & iommu::kTcePermMask)) continue;
        ++cleared;
        if (v2) {
          const uint64_t ua = iommu::from_be(cache.entries[i].load(std::memory_order_relaxed));
          cache.entries[i].store(0, std::memory_order_relaxed);
          if (!region || !region->contains(ua, page)) {
            if (region) flush();
            region = ua ? held->lookup(ua, page) : nullptr;
            if (!region) continue;
          }
          if (iommu::device_may_write(iommu::tce_direction(old))) region->mark_dirty(ua);  // no-op for devmem
          ++pending;
        } else {
          drop_old_entry_v1({old & ~iommu::kTcePermMask, iommu::tce_direction(old)});
        }
      }
      table.count_live(-static_cast<int64_t>(cleared));
      live -= cleared;
    }
    entry += run;
    pages -= run;
  }
  if (region) flush();
}

// --- dispatch ---

Result<void> SpaprTceIommu::check_before_copy(mm::AddressSpace& caller, unsigned long cmd) {
  Lock lock(mutex_);
  // tce_iommu_ioctl's sanity check comes before everything: another process's calls are EPERM, whatever they are.
  NV2PT_TRY(check_mm(caller));
  const bool v2 = version_ == Version::kV2;
  switch (cmd) {
    case VFIO_IOMMU_SPAPR_TCE_GET_INFO:
      if (!first_group() || !first_group()->table_group()) return fail(kENXIO);
      break;
    case VFIO_IOMMU_MAP_DMA:
    case VFIO_IOMMU_UNMAP_DMA:
      if (!enabled_) return fail(kEPERM);
      break;
    case VFIO_IOMMU_SPAPR_REGISTER_MEMORY:
      if (!v2) return fail(kENOTTY);
      NV2PT_TRY(bind_mm(caller));  // tce_iommu_mm_set binds the process even if the copy then faults
      break;
    case VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY:
      if (!v2) return fail(kENOTTY);
      if (!mm_) return fail(kEPERM);
      break;
    case VFIO_IOMMU_SPAPR_TCE_CREATE:
    case VFIO_IOMMU_SPAPR_TCE_REMOVE:
      if (!v2) return fail(kENOTTY);
      NV2PT_TRY(bind_mm(caller));
      if (groups_.empty()) return fail(kENXIO);
      break;
    default: break;
  }
  return {};
}

Result<long> SpaprTceIommu::ioctl(mm::AddressSpace& caller, unsigned long cmd, unsigned long arg) {
  if (cmd == VFIO_CHECK_EXTENSION) return check_extension(arg, options_.eeh_enabled);
  // What the kernel checks before copy_from_user, so a bad pointer is EFAULT only where the kernel gets to the copy.
  // The typed calls below check it all again under their lock.
  NV2PT_TRY(check_before_copy(caller, cmd));
  switch (cmd) {
    case VFIO_IOMMU_SPAPR_TCE_GET_INFO: {
      vfio_iommu_spapr_tce_info info;
      NV2PT_TRY(copy_in_argsz(arg, info, offsetofend(vfio_iommu_spapr_tce_info, dma32_window_size)));
      NV2PT_TRY(get_info(caller, info));
      const size_t len = info.argsz >= sizeof(info) ? sizeof(info)
                                                    : offsetofend(vfio_iommu_spapr_tce_info, dma32_window_size);
      NV2PT_TRY(copy_out(arg, info, len));
      return 0;
    }
    case VFIO_IOMMU_MAP_DMA: {
      vfio_iommu_type1_dma_map map;
      NV2PT_TRY(copy_in_argsz(arg, map, sizeof(map)));
      NV2PT_TRY(map_dma(caller, map));
      return 0;
    }
    case VFIO_IOMMU_UNMAP_DMA: {
      vfio_iommu_type1_dma_unmap unmap;
      NV2PT_TRY(copy_in_argsz(arg, unmap, sizeof(unmap)));
      NV2PT_TRY(unmap_dma(caller, unmap));
      return 0;
    }
    case VFIO_IOMMU_ENABLE: NV2PT_TRY(enable(caller)); return 0;
    case VFIO_IOMMU_DISABLE: NV2PT_TRY(disable(caller)); return 0;
    case VFIO_EEH_PE_OP: {
      vfio_eeh_pe_op op;
      NV2PT_TRY(copy_in_argsz(arg, op, offsetofend(vfio_eeh_pe_op, op)));
      return eeh_pe_op(caller, op);
    }
    case VFIO_IOMMU_SPAPR_REGISTER_MEMORY:
    case VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY: {
      vfio_iommu_spapr_register_memory reg;
      NV2PT_TRY(copy_in_argsz(arg, reg, sizeof(reg)));
      NV2PT_TRY(cmd == VFIO_IOMMU_SPAPR_REGISTER_MEMORY ? register_memory(caller, reg)
                                                        : unregister_memory(caller, reg));
      return 0;
    }
    case VFIO_IOMMU_SPAPR_TCE_CREATE: {
      vfio_iommu_spapr_tce_create create;
      NV2PT_TRY(copy_in_argsz(arg, create, sizeof(create)));
      NV2PT_TRY(create_window(caller, create));
      // Only start_addr goes back to the caller.
      NV2PT_TRY(mm::copy_to_client(arg + offsetof(vfio_iommu_spapr_tce_create, start_addr), &create.start_addr,
                                   sizeof(create.start_addr)));
      return 0;
    }
    case VFIO_IOMMU_SPAPR_TCE_REMOVE: {
      vfio_iommu_spapr_tce_remove remove;
      NV2PT_TRY(copy_in_argsz(arg, remove, sizeof(remove)));
      NV2PT_TRY(remove_window(caller, remove));
      return 0;
    }
    default: return fail(kENOTTY);
  }
}

// --- introspection ---

bool SpaprTceIommu::enabled() const {
  Lock lock(mutex_);
  return enabled_;
}

bool SpaprTceIommu::default_window_pending() const {
  Lock lock(mutex_);
  return default_window_pending_;
}

std::vector<SpaprTceIommu::WindowInfo> SpaprTceIommu::windows() const {
  Lock lock(mutex_);
  std::vector<WindowInfo> out;
  for (unsigned s = 0; s < windows_.size(); ++s) {
    if (windows_[s].view) out.push_back({s, windows_[s].view, windows_[s].charged_pages});
  }
  return out;
}

std::shared_ptr<iommu::TceTable> SpaprTceIommu::window_table(const iommu::TceTable* view) const {
  Lock lock(mutex_);
  for (const Window& w : windows_) {
    if (!view || w.view != view) continue;
    if (w.table) return w.table;
    return std::shared_ptr<iommu::TceTable>(std::shared_ptr<void>(), w.view);  // borrowed: the group owns it
  }
  return nullptr;
}

std::vector<mm::RegionRef> SpaprTceIommu::registrations() const {
  Lock lock(mutex_);
  return registrations_;
}

std::vector<Group*> SpaprTceIommu::groups() const {
  Lock lock(mutex_);
  return groups_;
}

mm::AddressSpace* SpaprTceIommu::address_space() const {
  Lock lock(mutex_);
  return mm_;
}

uint64_t SpaprTceIommu::live_tces() const {
  Lock lock(mutex_);
  return live_tces_locked();
}

uint64_t SpaprTceIommu::live_tces_locked() const {
  uint64_t live = 0;
  for (const Window& w : windows_) live += w.view ? w.view->live_entries() : 0;
  return live;
}

uint64_t SpaprTceIommu::charged_pages() const {
  Lock lock(mutex_);
  uint64_t pages = v1_locked_pages_;
  for (const Window& w : windows_) pages += w.charged_pages;
  return pages;
}

}  // namespace nv2pt::vfio
