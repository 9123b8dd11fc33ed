#include "mm/registry.h"

#include <vector>

#include "base/checked.h"
#include "base/fault_injection.h"
#include "base/host_page.h"

namespace nv2pt::mm {

namespace {

// [ua, end) of a registration: EINVAL if entries is 0 (mm_iommu_do_alloc's zero-length allocation gave ENOMEM),
// ua is not 64 KiB aligned, or the range does not fit the address space.
Result<uint64_t> registration_end(uint64_t ua, uint64_t entries) {
  if (entries == 0 || !is_aligned(ua, kHostPageSize)) return fail(kEINVAL);
  auto size = checked_shl(entries, kHostPageShift);
  if (!size) return fail(kEINVAL);
  auto end = checked_add(ua, *size);
  if (!end) return fail(kEINVAL);
  return *end;
}

}  // namespace

Registry::Registry(LockedMemory& locked, PagePinner& pinner) : locked_(locked), pinner_(pinner) {}

bool Registry::overlaps(uint64_t ua, uint64_t end) const {
  auto next = by_ua_.lower_bound(ua);
  if (next != by_ua_.end() && next->first < end) return true;
  if (next == by_ua_.begin()) return false;
  return std::prev(next)->second->end() > ua;
}

Result<RegionRef> Registry::insert(RegionRef region) {
  if (overlaps(region->ua(), region->end())) return fail(kEINVAL);
  by_ua_.emplace(region->ua(), region);
  if (auto dev = region->dev_hpa()) {
    by_dev_hpa_.emplace(*dev, region.get());
    max_dev_size_ = std::max(max_dev_size_, region->size());
    dev_lo_ = by_dev_hpa_.size() == 1 ? *dev : std::min(dev_lo_, *dev);
    dev_hi_ = std::max(dev_hi_, *dev + region->size());
  }
  return region;
}

Result<RegionRef> Registry::add_regular(uint64_t ua, uint64_t entries) {
  NV2PT_TRY(registration_end(ua, entries));
  NV2PT_TRY(locked_.charge(entries));
  // Pinning comes before the overlap check (v5.2+ order), so a range starting inside GPU RAM fails with EFAULT.
  if (auto pinned = pinner_.pin(ua, entries, /*write=*/true); !pinned) {
    locked_.uncharge(entries);
    return fail(pinned.error());
  }
  auto undo = [&] {
    pinner_.unpin(ua, entries);
    locked_.uncharge(entries);
  };
  // The hpas and backing shifts cannot change while we hold the pins, so they are read outside the registry lock.
  std::vector<uint64_t> hpas(entries);
  auto shift = pinner_.page_shift(ua, entries);
  if (!shift || !pinner_.hpas(ua, hpas)) {  // cannot happen while pinned; be safe
    undo();
    return fail(kEFAULT);
  }
  if (should_fail_allocation()) {
    undo();
    return fail(kENOMEM);
  }
  auto region = std::make_shared<RegisteredRegion>(
      ua, entries, RegisteredRegion::regular_page_shift(ua, entries, *shift), std::move(hpas));
  Result<RegionRef> inserted;
  {
    WriteLock lock(mu_);
    inserted = insert(std::move(region));
  }
  if (!inserted) undo();
  return inserted;
}

Result<RegionRef> Registry::add_device(uint64_t ua, uint64_t entries, uint64_t dev_hpa) {
  NV2PT_TRY(registration_end(ua, entries));
  // The physical range must not wrap either (is_devmem computes its end).
  if (!checked_add(dev_hpa, entries << kHostPageShift)) return fail(kEINVAL);
  if (should_fail_allocation()) return fail(kENOMEM);
  auto region = std::make_shared<RegisteredRegion>(ua, entries, dev_hpa);
  WriteLock lock(mu_);
  return insert(std::move(region));
}

Result<RegionRef> Registry::get(uint64_t ua, uint64_t entries) {
  WriteLock lock(mu_);
  auto it = by_ua_.find(ua);
  if (it == by_ua_.end() || it->second->entries() != entries) return fail(kENOENT);
  it->second->used_.fetch_add(1, std::memory_order_acq_rel);
  return it->second;
}

Result<void> Registry::put(const RegionRef& region) {
  if (!region) return fail(kENOENT);
  {
    WriteLock lock(mu_);
    auto it = by_ua_.find(region->ua());
    if (it == by_ua_.end() || it->second != region || region->used() == 0) return fail(kENOENT);
    if (region->used_.fetch_sub(1, std::memory_order_acq_rel) > 1) return {};
    if (!region->begin_destroy()) {  // TCEs still point into it
      region->used_.store(1, std::memory_order_release);
      return fail(kEBUSY);
    }
    by_ua_.erase(it);
    if (auto dev = region->dev_hpa()) {
      auto [lo, hi] = by_dev_hpa_.equal_range(*dev);
      for (auto d = lo; d != hi; ++d)
        if (d->second == region.get()) {
          by_dev_hpa_.erase(d);
          break;
        }
      dev_lo_ = dev_hi_ = 0;
      for (const auto& [dev_hpa, r] : by_dev_hpa_) {
        dev_lo_ = dev_hi_ ? dev_lo_ : dev_hpa;  // the map is ordered: the first one is the lowest
        dev_hi_ = std::max(dev_hi_, dev_hpa + r->size());
      }
    }
  }
  // Unlinked: no reader can find it any more (the kernel's RCU grace period). Device memory was never pinned or
  // charged (docs/kernel/invariants.md#1-device-memory-is-never-pinned). Dirty bits would be handed to the page
  // cache here; the model just drops the pins.
  if (!region->is_device()) {
    pinner_.unpin(region->ua(), region->entries());
    locked_.uncharge(region->entries());
  }
  return {};
}

RegisteredRegion* Registry::find_containing(uint64_t ua, uint64_t size) const {
  auto it = by_ua_.upper_bound(ua);
  if (it == by_ua_.begin()) return nullptr;
  --it;
  return it->second->contains(ua, size) ? it->second.get() : nullptr;
}

std::optional<uint64_t> Registry::find_devmem(uint64_t hpa, unsigned page_shift) const {
  // Device regions could in principle share physical ranges, so scan back over every one that starts close enough.
  for (auto it = by_dev_hpa_.upper_bound(hpa); it != by_dev_hpa_.begin();) {
    --it;
    if (hpa - it->first >= max_dev_size_) break;  // this and every earlier one end before hpa
    const RegisteredRegion& r = *it->second;
    const uint64_t dev_end = it->first + r.size();
    if (hpa < dev_end) {
      const uint64_t left = dev_end - hpa;
      return page_shift >= 64 ? left : std::min(uint64_t{1} << page_shift, left);
    }
  }
  return std::nullopt;
}

RegisteredRegion* Registry::ReadGuard::lookup(uint64_t ua, uint64_t size) const NV2PT_NO_THREAD_SAFETY_ANALYSIS {
  return registry_.find_containing(ua, size);  // the guard holds mu_ shared
}

RegionRef Registry::lookup(uint64_t ua, uint64_t size) const {
  ReadLock lock(mu_);
  RegisteredRegion* r = find_containing(ua, size);
  return r ? by_ua_.at(r->ua()) : nullptr;
}

std::optional<uint64_t> Registry::is_devmem(uint64_t hpa, unsigned page_shift) const {
  ReadLock lock(mu_);
  if (hpa < dev_lo_ || hpa >= dev_hi_) return std::nullopt;
  return find_devmem(hpa, page_shift);
}

bool Registry::empty() const {
  ReadLock lock(mu_);
  return by_ua_.empty();
}

size_t Registry::size() const {
  ReadLock lock(mu_);
  return by_ua_.size();
}

void Registry::for_each(const std::function<void(const RegisteredRegion&)>& fn) const {
  ReadLock lock(mu_);
  for (const auto& [ua, region] : by_ua_) fn(*region);
}

}  // namespace nv2pt::mm
