#include "vfio/group.h"

#include <algorithm>

#include "base/host_page.h"
#include "platform/machine.h"
#include "vfio/container.h"
#include "vfio/pci_device.h"

namespace nv2pt::vfio {
namespace {

class NoFds final : public FdResolver {
 public:
  Result<std::shared_ptr<Container>> container(int) const override { return fail(kEBADF); }
  Result<Group*> group(int) const override { return fail(kEBADF); }
  Result<int> install_device(Group&, PciDevice&) override { return fail(Errno{EMFILE}); }
};

}  // namespace

FdResolver& FdResolver::none() {
  static NoFds none;
  return none;
}

Group::Group(int id, iommu::TableGroup* table_group, const platform::Machine* machine,
             std::vector<PciDevice*> devices)
    : id_(id), table_group_(table_group), machine_(machine), devices_(std::move(devices)) {}

Group::~Group() {
  MutexLock lock(mutex_);
  unset_container_locked();
}

Result<void> Group::open() {
  MutexLock lock(mutex_);
  // vfio_group_fops_open: one open at a time, and none while a previous open's container binding lives on (the
  // group fd was closed while device fds or KVM still hold the container).
  if (open_ || container_) return fail(kEBUSY);
  open_ = true;
  return {};
}

void Group::release() {
  MutexLock lock(mutex_);
  // Closing the group fd dissolves its container binding once no device fd needs it.
  if (device_fds_ == 0 && external_users_ == 0) unset_container_locked();
  open_ = false;
}

bool Group::is_open() const {
  MutexLock lock(mutex_);
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
  MutexLock lock(mutex_);
  if (container_) status.flags |= VFIO_GROUP_FLAGS_CONTAINER_SET;
  return {};
}

Result<void> Group::set_container(const std::shared_ptr<Container>& container) {
  MutexLock lock(mutex_);
  if (container_ || !container) return fail(kEINVAL);
  NV2PT_TRY(container->attach_group(*this));
  container_ = container;
  return {};
}

Result<void> Group::unset_container() {
  MutexLock lock(mutex_);
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
  MutexLock lock(mutex_);
  return container_;
}

Result<PciDevice*> Group::get_device(mm::AddressSpace& caller, std::string_view name) {
  MutexLock lock(mutex_);
  // vfio_group_add_container_user: a container with an IOMMU driver, and a viable group.
  if (!container_ || !container_->iommu() || !viable()) return fail(kEINVAL);
  auto it = std::find_if(devices_.begin(), devices_.end(), [&](PciDevice* d) { return d->name() == name; });
  if (it == devices_.end()) return fail(kENODEV);
  NV2PT_TRY((*it)->open(caller, kvm_lpid_));
  ++device_fds_;
  return *it;
}

Result<long> Group::ioctl(mm::AddressSpace& caller, unsigned long cmd, unsigned long arg, FdResolver& fds) {
  switch (cmd) {
    case VFIO_GROUP_GET_STATUS: {
      vfio_group_status status;
      const size_t minsz = offsetofend(vfio_group_status, flags);
      NV2PT_TRY(copy_in(arg, status, minsz));
      NV2PT_TRY(get_status(status));
      NV2PT_TRY(copy_out(arg, status, minsz));
      return 0;
    }
    case VFIO_GROUP_SET_CONTAINER: {
      int32_t fd;
      NV2PT_TRY(copy_in(arg, fd));
      if (fd < 0) return fail(kEINVAL);
      // vfio_group_set_container: a group already in use is EINVAL before the fd is even looked at.
      if (container()) return fail(kEINVAL);
      std::shared_ptr<Container> c = NV2PT_TRY(fds.container(fd));
      NV2PT_TRY(set_container(c));
      return 0;
    }
    case VFIO_GROUP_UNSET_CONTAINER: NV2PT_TRY(unset_container()); return 0;
    case VFIO_GROUP_GET_DEVICE_FD: {
      // strndup_user(arg, PAGE_SIZE): the name, read up to its NUL.
      const std::string name = NV2PT_TRY(mm::copy_string_from_client(arg, kHostPageSize));
      PciDevice* device = NV2PT_TRY(get_device(caller, name));
      Result<int> fd = fds.install_device(*this, *device);
      if (!fd) {
        device_released(*device);
        return fail(fd.error());
      }
      return *fd;
    }
    default: return fail(kENOTTY);
  }
}

void Group::set_kvm(std::optional<uint64_t> lpid) {
  MutexLock lock(mutex_);
  kvm_lpid_ = lpid;
}

std::optional<uint64_t> Group::kvm() const {
  MutexLock lock(mutex_);
  return kvm_lpid_;
}

void Group::device_released(PciDevice& device) {
  device.release();
  MutexLock lock(mutex_);
  if (device_fds_ > 0) --device_fds_;
  // The group fd may have been closed first: the last device fd then dissolves the binding.
  if (device_fds_ == 0 && external_users_ == 0 && !open_) unset_container_locked();
}

Result<void> Group::get_external_user() {
  MutexLock lock(mutex_);
  // vfio_group_add_container_user, as for a device fd.
  if (!container_ || !container_->iommu() || !viable()) return fail(kEINVAL);
  ++external_users_;
  return {};
}

void Group::put_external_user() {
  MutexLock lock(mutex_);
  if (external_users_ > 0) --external_users_;
  if (device_fds_ == 0 && external_users_ == 0 && !open_) unset_container_locked();
}

}  // namespace nv2pt::vfio
