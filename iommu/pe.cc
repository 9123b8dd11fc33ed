#include "iommu/pe.h"

namespace nv2pt::iommu {

Result<void> Pe::set_window(unsigned num, TceTable* table) {
  if (num >= kMaxWindows || !table) return fail(kEINVAL);
  MutexLock lock(mutex_);
  if (fail_next_set_window_) {
    fail_next_set_window_ = false;
    return fail(kEIO);
  }
  // One TVE: the NPU sees only the window programmed last.
  if (kind_ == Kind::kNpu2) windows_.fill(nullptr);
  windows_[num] = table;
  return {};
}

void Pe::unset_window(unsigned num) {
  if (num >= kMaxWindows) return;
  MutexLock lock(mutex_);
  windows_[num] = nullptr;
}

TceTable* Pe::window(unsigned num) const {
  if (num >= kMaxWindows) return nullptr;
  MutexLock lock(mutex_);
  return windows_[num];
}

unsigned Pe::window_count() const {
  MutexLock lock(mutex_);
  unsigned n = 0;
  for (const TceTable* t : windows_) n += t != nullptr;
  return n;
}

bool Pe::bypass() const {
  MutexLock lock(mutex_);
  return bypass_;
}

void Pe::set_npu_gpu(platform::Hardware& hardware, const platform::PciAddress& gpu) {
  npu_gpu_ = NpuGpu{&hardware, gpu};
}

void Pe::take_ownership() {
  {
    MutexLock lock(mutex_);
    const bool had_window0 = windows_[0] != nullptr;
    windows_[0] = nullptr;
    // The NPU's single TVE held the 32-bit window, so bypass was off already and its context stays as it is.
    if (kind_ == Kind::kNpu2 && had_window0) return;
    bypass_ = false;
  }
  // The firmware's answer is not looked at, as in the kernel.
  if (npu_gpu_) (void)npu_gpu_->hardware->npu_unmap_lpar(npu_gpu_->gpu);
}

void Pe::release_ownership() {
  {
    MutexLock lock(mutex_);
    windows_.fill(nullptr);
    bypass_ = true;
  }
  if (npu_gpu_) {
    (void)npu_gpu_->hardware->npu_map_lpar(npu_gpu_->gpu, 0, platform::kMsrDr | platform::kMsrPr | platform::kMsrHv);
  }
}

TceTable* Pe::window_at(uint64_t bus_addr) const {
  MutexLock lock(mutex_);
  return window_at_locked(bus_addr);
}

TceTable* Pe::window_at_locked(uint64_t bus_addr) const {
  for (TceTable* table : windows_)
    if (table && table->contains(bus_addr)) return table;
  return nullptr;
}

Result<uint64_t> Pe::translate(uint64_t bus_addr, bool write) const {
  MutexLock lock(mutex_);
  const TceTable* table = window_at_locked(bus_addr);
  if (!table) return fail(kEFAULT);
  const uint64_t index = (bus_addr - table->bus_start()) >> table->page_shift();
  const uint64_t tce = table->get(index);
  const uint64_t needed = write ? kTceWrite : kTceRead;
  if (!(tce & kTcePermMask)) return fail(kEFAULT);
  if (!(tce & needed)) return fail(kEPERM);
  const uint64_t page_mask = table->page_size() - 1;
  return (tce & ~kTcePermMask & ~page_mask) | (bus_addr & page_mask);
}

}  // namespace nv2pt::iommu
