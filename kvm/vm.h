// A KVM guest as the in-kernel TCE path sees it (book3s_64_vio.c, virt/kvm/vfio.c, virtual mode): its memory slots
// (guest physical -> user address), its guest TCE tables by LIOBN, the VFIO groups added to its KVM-VFIO device,
// and the TCE hypercalls H_PUT_TCE, H_PUT_TCE_INDIRECT, H_STUFF_TCE and H_GET_TCE, which update the guest table and,
// for every attached hardware table, the host TCEs behind each guest TCE.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "base/errno.h"
#include "kvm/guest_tce_table.h"
#include "mm/address_space.h"
#include "mm/thread_annotations.h"
#include "vfio/group.h"

namespace nv2pt::kvm {

// PAPR hypercall return codes; H_TOO_HARD is KVM-internal: "let the next handler (userspace) do it".
inline constexpr long kHSuccess = 0;
inline constexpr long kHHardware = -1;
inline constexpr long kHParameter = -4;
inline constexpr long kHTooHard = 9999;

class Vm {
 public:
  Vm(mm::AddressSpace& mm, uint32_t lpid) : mm_(mm), lpid_(lpid) {}
  ~Vm();

  mm::AddressSpace& address_space() const { return mm_; }
  uint32_t lpid() const { return lpid_; }

  // KVM_SET_USER_MEMORY_REGION (size 0 deletes the slot). EINVAL for misaligned or overlapping slots. Waits for
  // the hypercalls in flight, as the kernel's synchronize_srcu does: none sees a slot change half-way.
  Result<void> set_memory_region(uint32_t slot, uint64_t gpa, uint64_t size, uint64_t ua);
  std::optional<uint64_t> gpa_to_ua(uint64_t gpa) const;

  // KVM_CREATE_SPAPR_TCE_64: EBUSY for a LIOBN already in use, else GuestTceTable::create's errors.
  Result<GuestTceTable*> create_tce_table(const CreateSpaprTce64& args);
  // The table's fd closed: detached from everything, charge given back.
  void release_tce_table(uint64_t liobn);
  GuestTceTable* tce_table(uint64_t liobn) const;

  // KVM_DEV_VFIO_GROUP_ADD / DEL. ADD holds the group in its container (EINVAL without one, EEXIST if added
  // already); DEL drops the group's guest-table links and its hold. The VM's end lets go of the groups left.
  Result<void> vfio_group_add(vfio::Group& group);
  Result<void> vfio_group_del(vfio::Group& group);
  bool has_group(const vfio::Group& group) const;
  // KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE: ENOENT if the group was not added; EFAULT without table-group data; EINVAL
  // if no hardware table of the group has host page <= guest page, the same bus start and at least the guest
  // window's size (kvm_spapr_tce_attach_iommu_group; docs/kernel/kvm.md#set-spapr-tce).
  Result<void> vfio_set_spapr_tce(vfio::Group& group, uint64_t liobn);

  // The hypercalls (virtual mode). `tce_list_gpa` is the guest physical address of a 4 KiB list of big-endian TCEs.
  long h_put_tce(uint64_t liobn, uint64_t ioba, uint64_t tce);
  long h_put_tce_indirect(uint64_t liobn, uint64_t ioba, uint64_t tce_list_gpa, uint64_t npages);
  long h_stuff_tce(uint64_t liobn, uint64_t ioba, uint64_t tce_value, uint64_t npages);
  std::pair<long, uint64_t> h_get_tce(uint64_t liobn, uint64_t ioba) const;

 private:
  struct Slot {
    uint64_t gpa, size, ua;
  };
  // The checks common to every hcall on an ioba range: entry index or H_PARAMETER.
  long check_ioba(const GuestTceTable& stt, uint64_t ioba, uint64_t npages) const;
  // gpa -> user address through the memory slots; the caller holds slots_mutex_ (shared or not).
  std::optional<uint64_t> translate(uint64_t gpa) const NV2PT_REQUIRES_SHARED(slots_mutex_);
  // Validates one guest TCE against every attached table before anything changes: H_SUCCESS or the error. `ua` is
  // the translation of the TCE's address (nullopt: in no memory slot).
  long validate(const GuestTceTable& stt, uint64_t tce, std::optional<uint64_t> ua,
                const mm::Registry::ReadGuard& guard) const;
  // Writes (or clears) the host TCEs behind guest entry `entry` in one hardware table, the user address `ua`
  // behind a TCE with permissions; on failure clears all of them again through the unmap path, so no count or
  // cache entry is left behind (the kernel's kvmppc_clear_tce cleared only the hardware TCEs:
  // docs/kernel/kvm.md#h_put_tce).
  long mirror(const GuestTceTable& stt, iommu::TceTable& table, uint64_t entry, uint64_t tce, uint64_t ua,
              const mm::Registry::ReadGuard& guard);
  long map_host_entry(iommu::TceTable& table, uint64_t index, uint64_t ua, iommu::DmaDirection dir,
                      const mm::Registry::ReadGuard& guard);
  long unmap_host_entry(iommu::TceTable& table, uint64_t index, const mm::Registry::ReadGuard& guard);

  mm::AddressSpace& mm_;
  const uint32_t lpid_;
  mutable std::mutex mutex_;
  // The memory slots have their own lock, the kernel's kvm->srcu: a hypercall that translates guest addresses
  // holds it shared from its first translation to its last use of the result (taken before the registry's read
  // guard, never under mutex_), a slot change exclusively. Group add/del take the group's lock (and through it the
  // container's) under mutex_, so slots are not under mutex_ either.
  mutable mm::SharedMutex slots_mutex_;
  std::map<uint32_t, Slot> slots_ NV2PT_GUARDED_BY(slots_mutex_);
  std::map<uint64_t, std::unique_ptr<GuestTceTable>> tables_;
  std::vector<vfio::Group*> groups_;
};

}  // namespace nv2pt::kvm
