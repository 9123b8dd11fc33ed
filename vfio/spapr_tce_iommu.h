// The sPAPR TCE IOMMU driver of a VFIO container (vfio_iommu_spapr_tce.c, v5.x), v1 and v2: DMA windows built from
// TCE tables, MAP/UNMAP of user memory into them, memory pre-registration (v2) and EEH pass-through.
//
// Every call takes the calling process's address space: the container binds to the first one that needs it, and
// every call but CHECK_EXTENSION from another one fails with EPERM. Calls are serialised by one mutex, MAP and
// UNMAP included (the kernel does not lock those: docs/kernel/container.md#locking).
#pragma once

#include "vfio/uapi.h"

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "base/errno.h"
#include "iommu/tce_table.h"
#include "mm/address_space.h"
#include "vfio/group.h"

namespace nv2pt::vfio {

class SpaprTceIommu {
 public:
  enum class Version { kV1, kV2 };

  struct Options {
    uint64_t max_alloc_bytes = iommu::kDefaultMaxAllocBytes;  // largest physically contiguous table block
    bool eeh_enabled = true;                                   // the host has EEH (CHECK_EXTENSION(VFIO_EEH))
    // Live TCEs one container may hold over all its windows (CVE-2019-3882: type1 had no bound on its mappings
    // and got dma_entry_limit, 65535 mappings). A MAP_DMA that would pass it fails with ENOSPC and maps nothing.
    // 2^24 TCEs: 1 TiB of 64 KiB pages, enough for the whole default machine (six GPUs' 128 GiB GPU-RAM windows
    // plus guest RAM) in one container; what they cost the model (16 B per TCE) stays bounded at 256 MiB.
    uint64_t max_live_tces = uint64_t{1} << 24;
  };

  // VFIO_SET_IOMMU's open: type 2 (v1) or 7 (v2), EINVAL otherwise.
  static Result<std::unique_ptr<SpaprTceIommu>> open(unsigned long type, Options options);
  static Result<std::unique_ptr<SpaprTceIommu>> open(unsigned long type) { return open(type, Options{}); }
  // Release: detaches every group, clears and frees every table, drops every registration, gives back the v1
  // charge. Locked memory ends where it was before the container was used.
  ~SpaprTceIommu();
  SpaprTceIommu(const SpaprTceIommu&) = delete;
  SpaprTceIommu& operator=(const SpaprTceIommu&) = delete;

  // Answers of this driver to VFIO_CHECK_EXTENSION: 1 for types 2 and 7, EEH when enabled; 0 otherwise.
  // Inline: it is the one container call a client makes in a loop, and the interposer dispatches it directly.
  static long check_extension(unsigned long extension, bool eeh_enabled) {
    switch (extension) {
      case VFIO_SPAPR_TCE_IOMMU:
      case VFIO_SPAPR_TCE_v2_IOMMU: return 1;
      case VFIO_EEH: return eeh_enabled ? 1 : 0;
      default: return 0;
    }
  }

  // Group attach and detach (tce_iommu_attach_group, tce_iommu_detach_group; docs/kernel/container.md#attach).
  Result<void> attach_group(Group& group);
  void detach_group(Group& group);

  // The ioctls, with the checks of tce_iommu_ioctl in kernel order (docs/kernel/container.md). The structs are those of
  // <linux/vfio.h>; in/out structs are updated in place. MAP and UNMAP return 0 on success.
  Result<void> get_info(mm::AddressSpace& caller, vfio_iommu_spapr_tce_info& info);
  Result<void> map_dma(mm::AddressSpace& caller, const vfio_iommu_type1_dma_map& map);
  Result<void> unmap_dma(mm::AddressSpace& caller, const vfio_iommu_type1_dma_unmap& unmap);
  Result<void> register_memory(mm::AddressSpace& caller, const vfio_iommu_spapr_register_memory& reg);
  Result<void> unregister_memory(mm::AddressSpace& caller, const vfio_iommu_spapr_register_memory& reg);
  Result<void> enable(mm::AddressSpace& caller);
  Result<void> disable(mm::AddressSpace& caller);
  Result<long> eeh_pe_op(mm::AddressSpace& caller, const vfio_eeh_pe_op& op);
  Result<void> create_window(mm::AddressSpace& caller, vfio_iommu_spapr_tce_create& create);
  Result<void> remove_window(mm::AddressSpace& caller, const vfio_iommu_spapr_tce_remove& remove);

  // Dispatch of a container ioctl by number, for the interposer: `arg` is the user's pointer (EFAULT if null) or,
  // for CHECK_EXTENSION, the value. ENOTTY for calls this driver does not have or that the other version owns.
  Result<long> ioctl(mm::AddressSpace& caller, unsigned long cmd, unsigned long arg);

  // Introspection for reports, tests and the invariant checker.
  struct WindowInfo {
    unsigned slot;
    const iommu::TceTable* table;
    uint64_t charged_pages;
  };
  Version version() const { return version_; }
  bool enabled() const;
  bool default_window_pending() const;
  std::vector<WindowInfo> windows() const;
  // The table of the window that `view` is, for KVM to hold: the owning pointer of a window this container
  // created, a non-owning one for the group's own table that a v1 container borrows (it lives as long as the
  // group), null if `view` is no window of this container.
  std::shared_ptr<iommu::TceTable> window_table(const iommu::TceTable* view) const;
  std::vector<mm::RegionRef> registrations() const;
  std::vector<Group*> groups() const;
  mm::AddressSpace* address_space() const;
  // Locked-memory pages this container charged: tables plus the v1 ENABLE charge (not its registrations).
  uint64_t charged_pages() const;
  // Valid TCEs over every window, the count Options::max_live_tces bounds.
  uint64_t live_tces() const;

 private:
  explicit SpaprTceIommu(Version version, Options options) : version_(version), options_(options) {}

  struct Window {
    // Shared with KVM guest tables attached to it (KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE), which keep it alive after the
    // window is removed, as the kernel's table reference does. Null for a v1 container, which borrows the group's.
    std::shared_ptr<iommu::TceTable> table;
    iommu::TceTable* view = nullptr;
    uint64_t charged_pages = 0;
  };

  Result<void> bind_mm(mm::AddressSpace& caller);
  Result<void> check_mm(mm::AddressSpace& caller) const;
  Group* first_group() const { return groups_.empty() ? nullptr : groups_.front(); }

  Result<void> create_default_window_locked();
  Result<uint64_t> create_window_locked(unsigned page_shift, uint64_t window_size, unsigned levels);
  void free_window_locked(unsigned slot);
  Window* find_window_locked(uint64_t bus_addr, unsigned* slot);

  Result<void> map_v2_locked(iommu::TceTable& table, uint64_t entry, uint64_t vaddr, uint64_t pages,
                             iommu::DmaDirection dir);
  Result<void> map_v1_locked(iommu::TceTable& table, uint64_t entry, uint64_t vaddr, uint64_t pages,
                             iommu::DmaDirection dir);
  // Clears [entry, entry+pages) and drops what the old entries held (v2: mapped counts; v1: pins). v2 callers
  // that already hold the registry's read guard pass it.
  void clear_locked(iommu::TceTable& table, uint64_t entry, uint64_t pages,
                    const mm::Registry::ReadGuard* held = nullptr);
  void drop_old_entry_v1(const iommu::TceTable::OldEntry& old);

  void detach_group_locked(Group& group);
  uint64_t live_tces_locked() const;

  const Version version_;
  const Options options_;
  mutable std::mutex mutex_;
  mm::AddressSpace* mm_ = nullptr;  // bound once, never changes (the process's mm outlives its containers)
  bool enabled_ = false;
  bool default_window_pending_ = false;
  uint64_t v1_locked_pages_ = 0;
  std::array<Window, iommu::kMaxWindows> windows_;
  std::vector<Group*> groups_;
  std::vector<mm::RegionRef> registrations_;  // one `used` reference each
};

}  // namespace nv2pt::vfio
