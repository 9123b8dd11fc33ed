#include "platform/machine.h"

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "base/log.h"
#include "base/thread_annotations.h"

namespace nv2pt::platform {

struct Machine::DriverBindings {
  mutable Mutex mutex;
  std::vector<std::string> drivers NV2PT_GUARDED_BY(mutex);  // parallel to Machine::functions_
};

Machine::Machine(DeviceTree tree) : tree_(std::move(tree)), drivers_(std::make_unique<DriverBindings>()) {}
Machine::Machine(Machine&&) noexcept = default;
Machine& Machine::operator=(Machine&&) noexcept = default;
Machine::~Machine() = default;

Machine Machine::load_default() {
  auto machine = load(DeviceTree::embedded_default());
  if (!machine) {
    log_line("embedded default topology: " + machine.error().message);
    std::abort();  // a broken build: the platform tests load this tree
  }
  return std::move(*machine);
}

const PciFunction* Machine::find_function(const PciAddress& address) const {
  auto it = std::ranges::lower_bound(functions_, address, {}, &PciFunction::address);
  return it != functions_.end() && it->address == address ? &*it : nullptr;
}

const Gpu* Machine::find_gpu(const PciAddress& address) const {
  const PciFunction* f = find_function(address);
  return f && f->kind == PciFunctionKind::kGpu ? &gpus_[f->role_index] : nullptr;
}

const NvlinkBridge* Machine::find_bridge(const PciAddress& address) const {
  const PciFunction* f = find_function(address);
  return f && f->kind == PciFunctionKind::kNvlinkBridge ? &bridges_[f->role_index] : nullptr;
}

const GpuMemory* Machine::memory_of(const Gpu& gpu) const { return gpu.memory ? &gpu_memories_[*gpu.memory] : nullptr; }

const Gpu* Machine::gpu_of(const NvlinkBridge& bridge) const { return bridge.gpu ? &gpus_[*bridge.gpu] : nullptr; }

const NvlinkLink* Machine::link_of(const NvlinkBridge& bridge) const { return bridge.link ? &links_[*bridge.link] : nullptr; }

std::optional<uint64_t> Machine::atsd_address(const NvlinkBridge& bridge) const {
  const NvlinkLink* link = link_of(bridge);
  if (!link || !link->index) return std::nullopt;
  const auto& atsd = phbs_[bridge.phb].atsd;
  if (*link->index >= atsd.size()) return std::nullopt;
  return atsd[*link->index];
}

std::vector<uint32_t> Machine::iommu_groups() const {
  std::vector<uint32_t> groups;
  for (const auto& f : functions_)
    if (f.iommu_group) groups.push_back(*f.iommu_group);
  std::ranges::sort(groups);
  // std::unique, not std::ranges::unique: clang 14 cannot instantiate libstdc++ 12's subrange (sanitizer builds).
  groups.erase(std::unique(groups.begin(), groups.end()), groups.end());
  return groups;
}

std::vector<const PciFunction*> Machine::functions_in_group(uint32_t group) const {
  std::vector<const PciFunction*> out;
  for (const auto& f : functions_)
    if (f.iommu_group == group) out.push_back(&f);
  return out;
}

void Machine::set_drivers(std::vector<std::string> drivers) {
  MutexLock lock(drivers_->mutex);
  drivers_->drivers = std::move(drivers);
}

std::optional<std::string> Machine::driver(const PciAddress& address) const {
  const PciFunction* f = find_function(address);
  if (!f) return std::nullopt;
  MutexLock lock(drivers_->mutex);
  return drivers_->drivers[static_cast<size_t>(f - functions_.data())];
}

Result<void> Machine::set_driver(const PciAddress& address, std::string driver) {
  const PciFunction* f = find_function(address);
  if (!f) return fail(kENODEV);
  MutexLock lock(drivers_->mutex);
  drivers_->drivers[static_cast<size_t>(f - functions_.data())] = std::move(driver);
  return {};
}

}  // namespace nv2pt::platform
