// An open /dev/vfio/vfio (vfio.c's container): the groups attached to it and, once VFIO_SET_IOMMU chose one, the
// IOMMU driver instance that serves every other ioctl. Detaching the last group releases the driver: the container
// goes back to the unset state.
#pragma once

#include "base/thread_annotations.h"
#include "vfio/uapi.h"

#include <memory>
#include <vector>

#include "base/errno.h"
#include "mm/address_space.h"
#include "vfio/group.h"
#include "vfio/spapr_tce_iommu.h"

namespace nv2pt::vfio {

class Container {
 public:
  explicit Container(SpaprTceIommu::Options options = {}) : options_(options) {}
  ~Container();

  // VFIO_GET_API_VERSION.
  static long api_version() { return VFIO_API_VERSION; }
  // VFIO_CHECK_EXTENSION: the driver's answer (sPAPR TCE v1/v2, EEH); TYPE1 variants are not built on POWER.
  long check_extension(unsigned long extension) const {
    return SpaprTceIommu::check_extension(extension, options_.eeh_enabled);
  }
  // VFIO_SET_IOMMU: EINVAL with no group attached or a driver already set; ENODEV for a type no driver offers;
  // the attach error of a group that the chosen driver refuses (e.g. EPERM for an IODA2 group on v1).
  Result<void> set_iommu(unsigned long type);

  // VFIO_GROUP_SET_CONTAINER / UNSET_CONTAINER, as the group layer calls them.
  Result<void> attach_group(Group& group);
  void detach_group(Group& group);

  // The container fd's ioctls (vfio_fops_unl_ioctl): GET_API_VERSION, CHECK_EXTENSION and SET_IOMMU here, every
  // other one to the driver, EINVAL while none is set. `caller` is the calling process; the overload without it
  // looks it up (AddressSpace::current()) only for the driver's ioctls, so CHECK_EXTENSION stays a few loads.
  Result<long> ioctl(mm::AddressSpace& caller, unsigned long cmd, unsigned long arg) {
    return dispatch(&caller, cmd, arg);
  }
  Result<long> ioctl(unsigned long cmd, unsigned long arg) {
    // The interposer's hot call stays inline (no call out of the preload's dispatch); dispatch() answers the same.
    if (cmd == VFIO_CHECK_EXTENSION) [[likely]] return check_extension(arg);
    return dispatch(nullptr, cmd, arg);
  }

  // The driver, null until SET_IOMMU.
  SpaprTceIommu* iommu() const;
  // SpaprTceIommu::window_table under the container's lock (the driver may go away with the last group).
  std::shared_ptr<iommu::TceTable> window_table(const iommu::TceTable* view) const;
  std::vector<Group*> groups() const;

 private:
  Result<long> dispatch(mm::AddressSpace* caller, unsigned long cmd, unsigned long arg);

  const SpaprTceIommu::Options options_;
  // Held shared while an ioctl runs in the driver, exclusive to change groups or the driver (vfio.c's group_lock).
  mutable SharedMutex mutex_;
  std::vector<Group*> groups_ NV2PT_GUARDED_BY(mutex_);  // newest first (vfio_group_set_container's list_add)
  std::unique_ptr<SpaprTceIommu> iommu_ NV2PT_GUARDED_BY(mutex_);
};

}  // namespace nv2pt::vfio
