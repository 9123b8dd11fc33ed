#include "mm/registered_region.h"

#include <algorithm>
#include <atomic>

#include "base/checked.h"
#include "base/host_page.h"

namespace nv2pt::mm {

namespace {
constexpr uint64_t kDirty = 1;
constexpr uint64_t kHpaMask = ~uint64_t{0xFFF};

// The array is written only through atomic_ref (dirty bits); C++23 has no atomic_ref<const T>.
uint64_t load_entry(const uint64_t& slot) {
  return std::atomic_ref<uint64_t>(const_cast<uint64_t&>(slot)).load(std::memory_order_relaxed);
}
}  // namespace

unsigned RegisteredRegion::regular_page_shift(uint64_t ua, uint64_t entries, unsigned min_backing_shift) {
  return std::min(natural_shift(ua | (entries << kHostPageShift)), min_backing_shift);
}

unsigned RegisteredRegion::device_page_shift(uint64_t ua, uint64_t entries, uint64_t dev_hpa) {
  return natural_shift(dev_hpa | ua | (entries << kHostPageShift));
}

RegisteredRegion::RegisteredRegion(uint64_t ua, uint64_t entries, unsigned page_shift, std::vector<uint64_t> hpas)
    : ua_(ua), entries_(entries), page_shift_(page_shift), hpas_(std::move(hpas)) {}

RegisteredRegion::RegisteredRegion(uint64_t ua, uint64_t entries, uint64_t dev_hpa)
    : ua_(ua), entries_(entries), page_shift_(device_page_shift(ua, entries, dev_hpa)), dev_hpa_(dev_hpa) {}

Result<void> RegisteredRegion::mapped_inc() {
  uint64_t v = mapped_.load(std::memory_order_acquire);
  do {
    if (v == 0) return fail(kENXIO);
  } while (!mapped_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel));
  return {};
}

void RegisteredRegion::mapped_dec() {
  uint64_t v = mapped_.load(std::memory_order_acquire);
  do {
    if (v <= 1) return;  // the registration's own count stays; 0 means "being destroyed", nothing to drop
  } while (!mapped_.compare_exchange_weak(v, v - 1, std::memory_order_acq_rel));
}

void RegisteredRegion::mapped_sub(uint64_t n) {
  uint64_t v = mapped_.load(std::memory_order_acquire);
  do {
    if (v <= 1) return;
  } while (!mapped_.compare_exchange_weak(v, v - std::min(n, v - 1), std::memory_order_acq_rel));
}

bool RegisteredRegion::begin_destroy() {
  uint64_t expected = 1;
  return mapped_.compare_exchange_strong(expected, 0, std::memory_order_acq_rel);
}

void RegisteredRegion::mark_dirty(uint64_t ua) {
  if (dev_hpa_ || ua < ua_) return;
  const uint64_t entry = (ua - ua_) >> kHostPageShift;
  if (entry >= entries_) return;
  // Test first: a page stays dirty across map/unmap cycles, and a plain load does not take the line exclusively.
  std::atomic_ref<uint64_t> slot(hpas_[entry]);
  if (!(slot.load(std::memory_order_relaxed) & kDirty)) slot.fetch_or(kDirty, std::memory_order_relaxed);
}

bool RegisteredRegion::is_dirty(uint64_t ua) const {
  if (dev_hpa_ || ua < ua_) return false;
  const uint64_t entry = (ua - ua_) >> kHostPageShift;
  if (entry >= entries_) return false;
  return load_entry(hpas_[entry]) & kDirty;
}

uint64_t RegisteredRegion::page_hpa(uint64_t entry) const {
  if (dev_hpa_ || entry >= entries_) return 0;
  return load_entry(hpas_[entry]) & kHpaMask;
}

}  // namespace nv2pt::mm
