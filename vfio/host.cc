#include "vfio/host.h"

#include "base/thread_annotations.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

namespace nv2pt::vfio {

struct Host::Impl {
  platform::Machine machine;
  HostOptions options;
  std::unique_ptr<platform::Hardware> hardware;
  iommu::HostTableGroups table_groups;
  std::map<platform::PciAddress, std::unique_ptr<PciDevice>> devices;
  std::map<int, std::unique_ptr<Group>> groups;
  mutable Mutex mutex;
  // Pruned by every reader too: make_shared keeps a closed container's memory until its last weak reference goes.
  mutable std::vector<std::weak_ptr<Container>> containers NV2PT_GUARDED_BY(mutex);
  std::map<int, int> lock_fds NV2PT_GUARDED_BY(mutex);  // group id -> flock'ed lock file

  explicit Impl(platform::Machine m) : machine(std::move(m)) {}
};

Result<std::unique_ptr<Host>> Host::create(platform::Machine machine, HostOptions options) {
  auto impl = std::make_unique<Impl>(std::move(machine));
  impl->options = options;
  const platform::Machine& m = impl->machine;
  impl->hardware = NV2PT_TRY(platform::Hardware::create(m, options.hardware));
  for (const platform::PciFunction& f : m.pci_functions()) {
    impl->devices.emplace(f.address, std::make_unique<PciDevice>(m, *impl->hardware, f));
  }
  impl->table_groups = iommu::build_host_table_groups(m, *impl->hardware);
  for (auto& [id, table_group] : impl->table_groups.groups) {
    std::vector<PciDevice*> devices;
    for (const platform::PciFunction* f : m.functions_in_group(id)) {
      devices.push_back(impl->devices.at(f->address).get());
    }
    impl->groups.emplace(static_cast<int>(id),
                         std::make_unique<Group>(static_cast<int>(id), table_group.get(), &m, std::move(devices)));
  }
  if (!options.runtime_dir.empty()) ::mkdir(options.runtime_dir.c_str(), 0700);
  return std::unique_ptr<Host>(new Host(std::move(impl)));
}

Host::Host(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Host::~Host() {
  // Groups first (they detach from containers), then devices, PEs and hardware.
  impl_->groups.clear();
  for (auto& [id, fd] : impl_->lock_fds) ::close(fd);
}

const platform::Machine& Host::machine() const { return impl_->machine; }
platform::Machine& Host::machine() { return impl_->machine; }
platform::Hardware& Host::hardware() { return *impl_->hardware; }

std::shared_ptr<Container> Host::open_container() {
  auto c = std::make_shared<Container>(impl_->options.iommu);
  MutexLock lock(impl_->mutex);
  std::erase_if(impl_->containers, [](auto& w) { return w.expired(); });
  impl_->containers.push_back(c);
  return c;
}

Result<Group*> Host::open_group(int id) {
  MutexLock lock(impl_->mutex);
  auto it = impl_->groups.find(id);
  if (it == impl_->groups.end()) return fail(kENOENT);
  if (!impl_->options.runtime_dir.empty()) {
    // Ownership across processes: an flock on a per-group file, dropped by the kernel if this process dies.
    const std::string path = impl_->options.runtime_dir + "/group-" + std::to_string(id) + ".lock";
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return fail(kEIO);
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd);
      return fail(kEBUSY);
    }
    if (auto r = it->second->open(); !r) {
      ::close(fd);
      return fail(r.error());
    }
    impl_->lock_fds[id] = fd;
    return it->second.get();
  }
  NV2PT_TRY(it->second->open());
  return it->second.get();
}

void Host::release_group(Group& group) {
  group.release();
  MutexLock lock(impl_->mutex);
  if (auto it = impl_->lock_fds.find(group.id()); it != impl_->lock_fds.end()) {
    ::close(it->second);
    impl_->lock_fds.erase(it);
  }
}

std::vector<int> Host::group_ids() const {
  std::vector<int> ids;
  for (auto& [id, g] : impl_->groups) ids.push_back(id);
  return ids;
}

Group* Host::group(int id) {
  auto it = impl_->groups.find(id);
  return it == impl_->groups.end() ? nullptr : it->second.get();
}

PciDevice* Host::device(const platform::PciAddress& address) {
  auto it = impl_->devices.find(address);
  return it == impl_->devices.end() ? nullptr : it->second.get();
}

std::optional<int> Host::iommu_group_of(const platform::PciAddress& address) const {
  const platform::PciFunction* f = impl_->machine.find_function(address);
  if (!f || !f->iommu_group) return std::nullopt;
  return static_cast<int>(*f->iommu_group);
}

std::string Host::devspec(const platform::PciAddress& address) const {
  const platform::PciFunction* f = impl_->machine.find_function(address);
  return f ? impl_->machine.device_tree().path(f->node) : std::string();
}

std::string Host::loc_code(const platform::PciAddress& address) const {
  const platform::PciFunction* f = impl_->machine.find_function(address);
  return f ? f->loc_code : std::string();
}

std::vector<std::shared_ptr<Container>> Host::containers() const {
  std::vector<std::shared_ptr<Container>> out;
  containers(out);
  return out;
}

void Host::containers(std::vector<std::shared_ptr<Container>>& out) const {
  out.clear();
  MutexLock lock(impl_->mutex);
  std::erase_if(impl_->containers, [&out](const std::weak_ptr<Container>& w) {
    auto c = w.lock();
    if (!c) return true;
    out.push_back(std::move(c));
    return false;
  });
}

}  // namespace nv2pt::vfio
