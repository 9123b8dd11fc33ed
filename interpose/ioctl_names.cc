#include "interpose/ioctl_names.h"

#include <fmt/format.h>

#include "vfio/uapi.h"

namespace nv2pt::interpose {

namespace {

template <class T>
const T* as(unsigned long arg) {
  return reinterpret_cast<const T*>(arg);
}

std::string container_call(unsigned long cmd, unsigned long arg) {
  switch (cmd) {
    case VFIO_GET_API_VERSION: return "VFIO_GET_API_VERSION";
    case VFIO_CHECK_EXTENSION: return fmt::format("VFIO_CHECK_EXTENSION({})", arg);
    case VFIO_SET_IOMMU: return fmt::format("VFIO_SET_IOMMU({})", arg);
    case VFIO_IOMMU_SPAPR_TCE_GET_INFO: return "VFIO_IOMMU_SPAPR_TCE_GET_INFO";
    case VFIO_IOMMU_MAP_DMA: {
      if (!arg) return "VFIO_IOMMU_MAP_DMA";
      auto* m = as<vfio_iommu_type1_dma_map>(arg);
      return fmt::format("VFIO_IOMMU_MAP_DMA{{vaddr={:#x},iova={:#x},size={:#x},flags={:#x}}}", m->vaddr, m->iova,
                         m->size, m->flags);
    }
    case VFIO_IOMMU_UNMAP_DMA: {
      if (!arg) return "VFIO_IOMMU_UNMAP_DMA";
      auto* u = as<vfio_iommu_type1_dma_unmap>(arg);
      return fmt::format("VFIO_IOMMU_UNMAP_DMA{{iova={:#x},size={:#x}}}", u->iova, u->size);
    }
    case VFIO_IOMMU_SPAPR_REGISTER_MEMORY:
    case VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY: {
      const char* name = cmd == VFIO_IOMMU_SPAPR_REGISTER_MEMORY ? "VFIO_IOMMU_SPAPR_REGISTER_MEMORY"
                                                                  : "VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY";
      if (!arg) return name;
      auto* r = as<vfio_iommu_spapr_register_memory>(arg);
      return fmt::format("{}{{vaddr={:#x},size={:#x}}}", name, r->vaddr, r->size);
    }
    case VFIO_IOMMU_ENABLE: return "VFIO_IOMMU_ENABLE";
    case VFIO_IOMMU_DISABLE: return "VFIO_IOMMU_DISABLE";
    case VFIO_EEH_PE_OP: {
      if (!arg) return "VFIO_EEH_PE_OP";
      return fmt::format("VFIO_EEH_PE_OP{{op={}}}", as<vfio_eeh_pe_op>(arg)->op);
    }
    case VFIO_IOMMU_SPAPR_TCE_CREATE: {
      if (!arg) return "VFIO_IOMMU_SPAPR_TCE_CREATE";
      auto* c = as<vfio_iommu_spapr_tce_create>(arg);
      return fmt::format("VFIO_IOMMU_SPAPR_TCE_CREATE{{page_shift={},window_size={:#x},levels={},start_addr={:#x}}}",
                         c->page_shift, c->window_size, c->levels, c->start_addr);
    }
    case VFIO_IOMMU_SPAPR_TCE_REMOVE: {
      if (!arg) return "VFIO_IOMMU_SPAPR_TCE_REMOVE";
      return fmt::format("VFIO_IOMMU_SPAPR_TCE_REMOVE{{start_addr={:#x}}}",
                         as<vfio_iommu_spapr_tce_remove>(arg)->start_addr);
    }
    default: return fmt::format("ioctl({:#x})", cmd);
  }
}

std::string group_call(unsigned long cmd, unsigned long arg) {
  switch (cmd) {
    case VFIO_GROUP_GET_STATUS: return "VFIO_GROUP_GET_STATUS";
    case VFIO_GROUP_SET_CONTAINER:
      return arg ? fmt::format("VFIO_GROUP_SET_CONTAINER(fd {})", *as<int>(arg)) : "VFIO_GROUP_SET_CONTAINER";
    case VFIO_GROUP_UNSET_CONTAINER: return "VFIO_GROUP_UNSET_CONTAINER";
    case VFIO_GROUP_GET_DEVICE_FD:
      return arg ? fmt::format("VFIO_GROUP_GET_DEVICE_FD(\"{:.64}\")", as<char>(arg)) : "VFIO_GROUP_GET_DEVICE_FD";
    default: return fmt::format("ioctl({:#x})", cmd);
  }
}

std::string device_call(unsigned long cmd, unsigned long arg, bool ok) {
  switch (cmd) {
    case VFIO_DEVICE_GET_INFO: return "VFIO_DEVICE_GET_INFO";
    case VFIO_DEVICE_GET_REGION_INFO: {
      if (!arg) return "VFIO_DEVICE_GET_REGION_INFO";
      auto* i = as<vfio_region_info>(arg);
      if (!ok) return fmt::format("VFIO_DEVICE_GET_REGION_INFO{{index={}}}", i->index);
      return fmt::format("VFIO_DEVICE_GET_REGION_INFO{{index={},argsz={},flags={:#x},cap_offset={},size={:#x}}}",
                         i->index, i->argsz, i->flags, i->cap_offset, i->size);
    }
    case VFIO_DEVICE_GET_IRQ_INFO:
      return arg ? fmt::format("VFIO_DEVICE_GET_IRQ_INFO{{index={}}}", as<vfio_irq_info>(arg)->index)
                 : "VFIO_DEVICE_GET_IRQ_INFO";
    case VFIO_DEVICE_SET_IRQS: {
      if (!arg) return "VFIO_DEVICE_SET_IRQS";
      auto* s = as<vfio_irq_set>(arg);
      return fmt::format("VFIO_DEVICE_SET_IRQS{{index={},flags={:#x},start={},count={}}}", s->index, s->flags,
                         s->start, s->count);
    }
    case VFIO_DEVICE_RESET: return "VFIO_DEVICE_RESET";
    case VFIO_DEVICE_GET_PCI_HOT_RESET_INFO: return "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO";
    case VFIO_DEVICE_PCI_HOT_RESET: return "VFIO_DEVICE_PCI_HOT_RESET";
    default: return fmt::format("ioctl({:#x})", cmd);
  }
}

}  // namespace

std::string describe_ioctl(FdKind kind, unsigned long cmd, unsigned long arg, const Result<long>& result) {
  switch (kind) {
    case FdKind::kContainer: return container_call(cmd, arg);
    case FdKind::kGroup: return group_call(cmd, arg);
    case FdKind::kDevice: return device_call(cmd, arg, result.has_value());
    case FdKind::kFile: break;
  }
  return fmt::format("ioctl({:#x})", cmd);
}

}  // namespace nv2pt::interpose
