// The emulated host kernel as a client sees it through /dev/vfio and sysfs: the machine and its device models,
// the IOMMU groups built from the topology (PEs, table groups, compound NVLink groups), the vfio-pci devices, and
// the containers opened so far. The interposer owns one Host per process.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/errno.h"
#include "iommu/host_table_groups.h"
#include "platform/hardware.h"
#include "platform/machine.h"
#include "vfio/container.h"
#include "vfio/group.h"
#include "vfio/pci_device.h"

namespace nv2pt::vfio {

struct HostOptions {
  SpaprTceIommu::Options iommu;
  platform::HardwareOptions hardware;
  // Directory for the group lock files that make group ownership exclusive across processes ("" = none).
  std::string runtime_dir;
};

class Host {
 public:
  static Result<std::unique_ptr<Host>> create(platform::Machine machine, HostOptions options = {});
  ~Host();

  const platform::Machine& machine() const;
  platform::Machine& machine();
  platform::Hardware& hardware();

  // open("/dev/vfio/vfio").
  std::shared_ptr<Container> open_container();
  // open("/dev/vfio/<id>"): ENOENT for no such group, EBUSY if open here or in another process.
  Result<Group*> open_group(int id);
  // The group fd was closed.
  void release_group(Group& group);

  std::vector<int> group_ids() const;
  Group* group(int id);
  PciDevice* device(const platform::PciAddress& address);

  // sysfs facts: /sys/bus/pci/devices/<bdf>/iommu_group -> ../../../kernel/iommu_groups/<n>; devspec (the DT
  // path of the function's node, no trailing newline, as 2019-era kernels printed it); ibm,loc-code.
  std::optional<int> iommu_group_of(const platform::PciAddress& address) const;
  std::string devspec(const platform::PciAddress& address) const;
  std::string loc_code(const platform::PciAddress& address) const;

  // Every container opened and still alive, for reports.
  std::vector<std::shared_ptr<Container>> containers() const;
  // The same into `out` (cleared first), whose capacity a caller that asks after every call can keep.
  void containers(std::vector<std::shared_ptr<Container>>& out) const;

 private:
  struct Impl;
  explicit Host(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace nv2pt::vfio
