#include "vfio/container.h"

#include <algorithm>

namespace nv2pt::vfio {

Container::~Container() {
  WriteLock lock(mutex_);
  iommu_.reset();  // detaches the groups still attached
}

Result<void> Container::set_iommu(unsigned long type) {
  WriteLock lock(mutex_);
  if (groups_.empty() || iommu_) return fail(kEINVAL);
  if (check_extension(type) <= 0 || type == VFIO_EEH) return fail(kENODEV);
  auto iommu = NV2PT_TRY(SpaprTceIommu::open(type, options_));
  for (Group* g : groups_) {
    if (auto r = iommu->attach_group(*g); !r) return r;  // the driver's release detaches what was attached
  }
  iommu_ = std::move(iommu);
  return {};
}

Result<void> Container::attach_group(Group& group) {
  WriteLock lock(mutex_);
  if (std::find(groups_.begin(), groups_.end(), &group) != groups_.end()) return fail(kEBUSY);
  if (iommu_) NV2PT_TRY(iommu_->attach_group(group));
  // vfio_group_set_container's list_add: newest first. SET_IOMMU attaches the groups to the driver in this order,
  // so the driver, which adds at the front too, lists groups attached before SET_IOMMU oldest first.
  groups_.insert(groups_.begin(), &group);
  return {};
}

void Container::detach_group(Group& group) {
  WriteLock lock(mutex_);
  auto it = std::find(groups_.begin(), groups_.end(), &group);
  if (it == groups_.end()) return;
  if (iommu_) iommu_->detach_group(group);
  groups_.erase(it);
  if (groups_.empty()) iommu_.reset();  // the last group out deprivileges the container
}

Result<long> Container::dispatch(mm::AddressSpace* caller, unsigned long cmd, unsigned long arg) {
  switch (cmd) {
    case VFIO_GET_API_VERSION: return api_version();
    // The driver's answer once one is set; the same answer as before, since only the sPAPR driver exists.
    case VFIO_CHECK_EXTENSION: return check_extension(arg);
    case VFIO_SET_IOMMU: NV2PT_TRY(set_iommu(arg)); return 0;
    default: break;
  }
  ReadLock lock(mutex_);
  if (!iommu_) return fail(kEINVAL);  // no driver: vfio_fops_unl_ioctl's initial -EINVAL
  return iommu_->ioctl(caller ? *caller : mm::AddressSpace::current(), cmd, arg);
}

std::shared_ptr<iommu::TceTable> Container::window_table(const iommu::TceTable* view) const {
  ReadLock lock(mutex_);
  return iommu_ ? iommu_->window_table(view) : nullptr;
}

SpaprTceIommu* Container::iommu() const {
  ReadLock lock(mutex_);
  return iommu_.get();
}

std::vector<Group*> Container::groups() const {
  ReadLock lock(mutex_);
  return groups_;
}

}  // namespace nv2pt::vfio
