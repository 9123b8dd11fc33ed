#include "iommu/host_table_groups.h"

#include <optional>
#include <string>

namespace nv2pt::iommu {
namespace {

// The page sizes a group offers: what every PHB of its members supports (PHB4 ∩ NPU2 for an NVLink group).
PageSizeMask group_page_sizes(const platform::Machine& m, const std::vector<const platform::PciFunction*>& fs) {
  PageSizeMask mask = ~0ull;
  for (const platform::PciFunction* f : fs) {
    const std::vector<uint32_t>& shifts = m.phb_of(*f).tce_page_shifts;
    mask &= shifts.empty() ? page_size_mask({12, 16}) : page_size_mask(shifts);
  }
  return mask;
}

}  // namespace

HostTableGroups build_host_table_groups(const platform::Machine& m, platform::Hardware& hardware) {
  HostTableGroups out;
  for (uint32_t id : m.iommu_groups()) {
    const std::vector<const platform::PciFunction*> functions = m.functions_in_group(id);
    std::vector<Pe*> members;
    std::map<size_t, Pe*> npu_pe_of_gpu;
    bool nvlink = false;
    for (const platform::PciFunction* f : functions) {
      if (f->kind == platform::PciFunctionKind::kNvlinkBridge) {
        nvlink = true;
        const std::optional<size_t> gpu = m.bridges()[f->role_index].gpu;
        if (gpu && npu_pe_of_gpu.count(*gpu)) continue;  // the GPU's other links share its NPU PE
        auto pe = std::make_unique<Pe>("npu-pe " + f->address.to_string(), Pe::Kind::kNpu2);
        if (gpu) {
          npu_pe_of_gpu[*gpu] = pe.get();
          pe->set_npu_gpu(hardware, m.gpus()[*gpu].address);
        }
        members.push_back(pe.get());
        out.pes.push_back(std::move(pe));
      } else {
        auto pe = std::make_unique<Pe>("pe " + f->address.to_string(), Pe::Kind::kPhb4);
        members.push_back(pe.get());
        out.pes.push_back(std::move(pe));
      }
    }
    TableGroup::Properties props;
    props.pgsizes = group_page_sizes(m, functions);
    const TableGroup::Ops ops = nvlink ? TableGroup::Ops::kNpuCompound : TableGroup::Ops::kIoda2;
    out.groups.emplace(id, std::make_unique<TableGroup>("group " + std::to_string(id), ops, props, std::move(members)));
  }
  return out;
}

}  // namespace nv2pt::iommu
