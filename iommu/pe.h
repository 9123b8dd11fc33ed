// A partitionable endpoint: the unit a PHB translates DMA for. A PHB4 PE (a GPU) has two translation validation
// entries (TVEs), one per DMA window; an NPU2 PE (the NVLink bridges of one GPU) has a single TVE, so programming
// one window removes the other (pnv_npu_set_window; docs/kernel/table-groups.md#npu-pe-has-one-tve).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "base/thread_annotations.h"
#include "base/errno.h"
#include "iommu/tce_table.h"
#include "platform/hardware.h"
#include "platform/pci_address.h"

namespace nv2pt::iommu {

inline constexpr unsigned kMaxWindows = 2;
// Bus address of window #1 (the 64-bit window); window #0 starts at the 32-bit window's start.
inline constexpr uint64_t kWindow1BusStart = 1ull << 59;

class Pe {
 public:
  enum class Kind { kPhb4, kNpu2 };

  Pe(std::string name, Kind kind) : name_(std::move(name)), kind_(kind) {}

  const std::string& name() const { return name_; }
  Kind kind() const { return kind_; }

  // Programs window `num` with `table` (OPAL set_window). EIO if the firmware call fails (an injected failure:
  // pnv_pci_ioda2_set_window returned OPAL's code unchanged; the model maps it to EIO,
  // docs/kernel/table-groups.md#set-window).
  Result<void> set_window(unsigned num, TceTable* table);
  void unset_window(unsigned num);
  // The table programmed in window `num`, nullptr if none.
  TceTable* window(unsigned num) const;
  // The window that holds `bus_addr`, the one translate() uses; nullptr if none.
  TceTable* window_at(uint64_t bus_addr) const;
  // Number of windows programmed.
  unsigned window_count() const;

  // Host ownership: bypass (the 64-bit direct window) is on while the host owns the PE.
  bool bypass() const;

  // An NPU PE's GPU, and the hardware whose NPU holds that GPU's address translation context: taking and releasing
  // the PE moves the context off and back onto the host (pnv_npu_take_ownership / pnv_npu_release_ownership).
  // Set once, before the PE is shared.
  void set_npu_gpu(platform::Hardware& hardware, const platform::PciAddress& gpu);
  // VFIO takes the PE from the host: bypass off, window 0 dropped (pnv_ioda2_take_ownership). An NPU PE whose
  // single TVE holds window 0 only drops it; otherwise bypass goes off and its GPU's context is unmapped from the
  // host (pnv_npu2_unmap_lpar_dev: DESTROY_CONTEXT, MAP_LPAR 0).
  void take_ownership();
  // Back to the host: windows dropped, bypass on. An NPU PE maps its GPU's context to the host again
  // (pnv_npu2_map_lpar_dev with LPID 0 and MSR DR|PR|HV).
  void release_ownership();

  // DMA as the PHB performs it: bus address -> host physical address through the TCE of the window that contains
  // it. EFAULT for no window or an invalid TCE, EPERM if the TCE lacks the needed permission (an EEH freeze on real
  // hardware).
  Result<uint64_t> translate(uint64_t bus_addr, bool write) const;

  // Test hook: the next set_window fails as the firmware would.
  void fail_next_set_window() { MutexLock lock(mutex_); fail_next_set_window_ = true; }

 private:
  std::string name_;
  Kind kind_;
  TceTable* window_at_locked(uint64_t bus_addr) const NV2PT_REQUIRES(mutex_);

  mutable Mutex mutex_;
  // Which window number each TVE holds and its table.
  std::array<TceTable*, kMaxWindows> windows_ NV2PT_GUARDED_BY(mutex_){};
  bool bypass_ NV2PT_GUARDED_BY(mutex_) = true;
  bool fail_next_set_window_ NV2PT_GUARDED_BY(mutex_) = false;
  struct NpuGpu {
    platform::Hardware* hardware;
    platform::PciAddress gpu;
  };
  std::optional<NpuGpu> npu_gpu_;  // NPU PEs of a GPU's bridges only
};

}  // namespace nv2pt::iommu
