// The IOMMU table groups the host builds from the machine at boot (pnv_pci_ioda_setup_iommu_api and
// pnv_try_setup_npu_table_group, v5.0–v5.12): one PE per GPU or other function (PHB4), one NPU PE per GPU's set of
// NVLink bridges (NPU2), and per IOMMU group a table group over its PEs — the compound NVLink group when the group
// holds bridges, a plain IODA2 group otherwise.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "iommu/pe.h"
#include "iommu/table_group.h"
#include "platform/hardware.h"
#include "platform/machine.h"

namespace nv2pt::iommu {

struct HostTableGroups {
  std::vector<std::unique_ptr<Pe>> pes;                   // outlive the groups that point at them
  std::map<uint32_t, std::unique_ptr<TableGroup>> groups;  // by IOMMU group number
};

// Every IOMMU group of `machine`. The NPU PEs reach their GPU's ATS context in `hardware` at ownership changes.
HostTableGroups build_host_table_groups(const platform::Machine& machine, platform::Hardware& hardware);

}  // namespace nv2pt::iommu
