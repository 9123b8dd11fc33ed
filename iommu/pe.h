// A partitionable endpoint: the unit a PHB translates DMA for. A PHB4 PE (a GPU) has two translation validation
// entries (TVEs), one per DMA window; an NPU2 PE (the NVLink bridges of one GPU) has a single TVE, so programming
// one window removes the other (pnv_npu_set_window; docs/kernel/table-groups.md#npu-pe-has-one-tve).
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <string>

#include "base/errno.h"
#include "iommu/tce_table.h"

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
  unsigned tve_count() const { return kind_ == Kind::kNpu2 ? 1 : kMaxWindows; }

  // Programs window `num` with `table` (OPAL set_window). EIO if the firmware call fails (an injected failure:
  // pnv_pci_ioda2_set_window returned OPAL's code unchanged; the model maps it to EIO,
  // docs/kernel/table-groups.md#set-window).
  Result<void> set_window(unsigned num, TceTable* table);
  void unset_window(unsigned num);
  // The table programmed in window `num`, nullptr if none.
  TceTable* window(unsigned num) const;
  // Number of windows programmed.
  unsigned window_count() const;

  // Host ownership: bypass (the 64-bit direct window) is on while the host owns the PE.
  bool bypass() const;
  void set_bypass(bool on);

  // DMA as the PHB performs it: bus address -> host physical address through the TCE of the window that contains
  // it. EFAULT for no window or an invalid TCE, EPERM if the TCE lacks the needed permission (an EEH freeze on real
  // hardware).
  Result<uint64_t> translate(uint64_t bus_addr, bool write) const;

  // Test hook: the next set_window fails as the firmware would.
  void fail_next_set_window() { std::lock_guard lock(mutex_); fail_next_set_window_ = true; }

 private:
  std::string name_;
  Kind kind_;
  mutable std::mutex mutex_;
  // Which window number each TVE holds and its table.
  std::array<TceTable*, kMaxWindows> windows_{};
  bool bypass_ = true;
  bool fail_next_set_window_ = false;
};

}  // namespace nv2pt::iommu
