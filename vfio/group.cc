#include "vfio/group.h"

#include <algorithm>

#include "platform/machine.h"
#include "vfio/container.h"
#include "vfio/pci_device.h"

namespace nv2pt::vfio {

Group::Group(int id, iommu::TableGroup* table_group, const platform::Machine* machine,
             std::vector<PciDevice*> devices)
    : id_(id), table_group_(table_group), machine_(machine), devices_(std::move(devices)) {}

Group::~Group() {
  std::lock_guard lock(mutex_);
  unset_container_locked();
}

Result<void> Group::open() {
  std::lock_guard lock(mutex_);
  if (open_) return fail(kEBUSY);
  open_ = true;
  return {};
}

void Group::release() {
  std::lock_guard lock(mutex_);
  // Closing the group fd dissolves its container binding once no device fd needs it.
  if (device_fds_ == 0 && external_users_ == 0) unset_container_locked();
  open_ = false;
}

bool Group::is_open() const {
  std::lock_guard lock(mutex_);
  return open_;
}

bool Group::viable() const {
  if (!machine_) return true;
  for (const PciDevice* d : devices_) {
    const std::string driver = machine_->driver(d->address()).value_or("");
    // vfio-pci, or no driver at all (pci-stub would count too).
    if (!driver.empty() && driver != "vfio-pci" && driver != "pci-stub") return false;
  }
  return true;
}

Result<void> Group::get_status(vfio_group_status& status) const {
  if (status.argsz < offsetofend(vfio_group_status, flags)) return fail(kEINVAL);
  status.flags = 0;
  if (viable()) status.flags |= VFIO_GROUP_FLAGS_VIABLE;
  std::lock_guard lock(mutex_);
  if (container_) status.flags |= VFIO_GROUP_FLAGS_CONTAINER_SET;
  return {};
}

Result<void> Group::set_container(const std::shared_ptr<Container>& container) {
  std::lock_guard lock(mutex_);
  if (container_ || !container) return fail(kEINVAL);
  NV2PT_TRY(container->attach_group(*this));
  container_ = container;
  return {};
}

Result<void> Group::unset_container() {
  std::lock_guard lock(mutex_);
  if (!container_) return fail(kEINVAL);
  if (device_fds_ > 0 || external_users_ > 0) return fail(kEBUSY);
  unset_container_locked();
  return {};
}

void Group::unset_container_locked() {
  if (!container_) return;
  container_->detach_group(*this);
  container_.reset();
}

std::shared_ptr<Container> Group::container() const {
  std::lock_guard lock(mutex_);
  return container_;
}

Result<PciDevice*> Group::get_device(mm::AddressSpace& caller, std::string_view name) {
  std::lock_guard lock(mutex_);
  // vfio_group_add_container_user: a container with an IOMMU driver, and a viable group.
  if (!container_ || !container_->iommu() || !viable()) return fail(kEINVAL);
  auto it = std::find_if(devices_.begin(), devices_.end(), [&](PciDevice* d) { return d->name() == name; });
  if (it == devices_.end()) return fail(kENODEV);
  NV2PT_TRY((*it)->open(caller, kvm_lpid_));
  ++device_fds_;
  return *it;
}

void Group::set_kvm(std::optional<uint64_t> lpid) {
  std::lock_guard lock(mutex_);
  kvm_lpid_ = lpid;
}

std::optional<uint64_t> Group::kvm() const {
  std::lock_guard lock(mutex_);
  return kvm_lpid_;
}

void Group::device_released(PciDevice& device) {
  device.release();
  std::lock_guard lock(mutex_);
  if (device_fds_ > 0) --device_fds_;
  // The group fd may have been closed first: the last device fd then dissolves the binding.
  if (device_fds_ == 0 && external_users_ == 0 && !open_) unset_container_locked();
}

Result<void> Group::get_external_user() {
  std::lock_guard lock(mutex_);
  // vfio_group_add_container_user, as for a device fd.
  if (!container_ || !container_->iommu() || !viable()) return fail(kEINVAL);
  ++external_users_;
  return {};
}

void Group::put_external_user() {
  std::lock_guard lock(mutex_);
  if (external_users_ > 0) --external_users_;
  if (device_fds_ == 0 && external_users_ == 0 && !open_) unset_container_locked();
}

}  // namespace nv2pt::vfio
