// A VFIO group (/dev/vfio/<n>): the unit of ownership. One open at a time (a second open, in this process or in
// another one, gets EBUSY), viable only while every member device is bound to vfio-pci or to no driver, attached
// to at most one container, and the way to device fds (VFIO_GROUP_GET_DEVICE_FD). The IOMMU driver sees its table
// group (the PEs it translates for) and the EEH state of its PE.
#pragma once

#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "base/thread_annotations.h"
#include "base/errno.h"
#include "iommu/table_group.h"
#include "mm/address_space.h"
#include "vfio/eeh_pe.h"
#include "vfio/fd_resolver.h"
#include "vfio/uapi.h"

namespace nv2pt::platform {
class Machine;
}

namespace nv2pt::vfio {

class Container;
class PciDevice;

class Group {
 public:
  // `table_group` may be null: a group without IOMMU table-group data (the container refuses it with ENODEV).
  // `machine` (optional) gives the host driver binding of the members, for viability.
  Group(int id, iommu::TableGroup* table_group, const platform::Machine* machine = nullptr,
        std::vector<PciDevice*> devices = {});
  ~Group();

  int id() const { return id_; }
  iommu::TableGroup* table_group() const { return table_group_; }
  EehPe& eeh() { return eeh_; }
  const std::vector<PciDevice*>& devices() const { return devices_; }

  // open("/dev/vfio/<n>"): EBUSY if already open, or while the container binding of a previous open lives on.
  // release(): the group fd closed (detaches from the container once no device fd or KVM holds it).
  Result<void> open();
  void release();
  bool is_open() const;

  // Every member bound to vfio-pci or to no driver.
  bool viable() const;

  // The group fd's ioctls (vfio_group_fops_unl_ioctl), arguments read from and written to the caller's memory.
  // The fds they name are resolved through `fds`, which also makes the fd VFIO_GROUP_GET_DEVICE_FD returns.
  Result<long> ioctl(mm::AddressSpace& caller, unsigned long cmd, unsigned long arg, FdResolver& fds);

  // VFIO_GROUP_GET_STATUS.
  Result<void> get_status(vfio_group_status& status) const;
  // VFIO_GROUP_SET_CONTAINER: EINVAL if the group already has a container; the container's attach errors.
  Result<void> set_container(const std::shared_ptr<Container>& container);
  // VFIO_GROUP_UNSET_CONTAINER: EINVAL without a container, EBUSY while device fds are open or KVM holds it.
  Result<void> unset_container();
  std::shared_ptr<Container> container() const;
  // VFIO_GROUP_GET_DEVICE_FD: EINVAL without a container with an IOMMU driver, or when the group is not viable;
  // ENODEV for a name that is no member; the device's open errors.
  Result<PciDevice*> get_device(mm::AddressSpace& caller, std::string_view name);
  // A device fd of this group was closed.
  void device_released(PciDevice& device);

  // vfio_group_get_external_user / put (KVM's hold on the group): EINVAL without a container with an IOMMU driver
  // or when not viable. While held, the group stays in its container; the last put after the group fd was closed
  // dissolves the binding, as the last device fd does.
  Result<void> get_external_user();
  void put_external_user();

  // KVM_DEV_VFIO_GROUP_ADD / DEL: the guest (its LPID) the group now belongs to. Devices opened while it is set map
  // their GPU to that LPID in the NPU; a KVM added after a device was opened is never forwarded to it (the
  // kernel's notifier is unregistered right after open: docs/kernel/kvm.md#kvm-set-notifier).
  void set_kvm(std::optional<uint64_t> lpid);
  std::optional<uint64_t> kvm() const;

 private:
  void unset_container_locked() NV2PT_REQUIRES(mutex_);

  const int id_;
  iommu::TableGroup* const table_group_;
  const platform::Machine* const machine_;
  const std::vector<PciDevice*> devices_;
  EehPe eeh_;
  mutable Mutex mutex_;
  bool open_ NV2PT_GUARDED_BY(mutex_) = false;
  std::shared_ptr<Container> container_ NV2PT_GUARDED_BY(mutex_);
  int device_fds_ NV2PT_GUARDED_BY(mutex_) = 0;  // container users beyond the group itself
  int external_users_ NV2PT_GUARDED_BY(mutex_) = 0;  // and KVM's holds
  std::optional<uint64_t> kvm_lpid_ NV2PT_GUARDED_BY(mutex_);
};

}  // namespace nv2pt::vfio
