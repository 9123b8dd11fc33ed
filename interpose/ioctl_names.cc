#include "interpose/ioctl_names.h"

#include <fmt/format.h>

#include "vfio/uapi.h"

namespace nv2pt::interpose {

namespace {

// The argument as the client left it, read like any other copy-in: false where it cannot be read.
template <class T>
bool as(unsigned long arg, T& value) {
  return vfio::copy_in(arg, value).has_value();
}

std::string container_call(unsigned long cmd, unsigned long arg) {
  switch (cmd) {
    case VFIO_GET_API_VERSION: return "VFIO_GET_API_VERSION";
    case VFIO_CHECK_EXTENSION: return fmt::format("VFIO_CHECK_EXTENSION({})", arg);
    case VFIO_SET_IOMMU: return fmt::format("VFIO_SET_IOMMU({})", arg);
    case VFIO_IOMMU_SPAPR_TCE_GET_INFO: return "VFIO_IOMMU_SPAPR_TCE_GET_INFO";
    case VFIO_IOMMU_MAP_DMA: {
      vfio_iommu_type1_dma_map m;
      if (!as(arg, m)) return "VFIO_IOMMU_MAP_DMA";
      return fmt::format("VFIO_IOMMU_MAP_DMA{{vaddr={:#x},iova={:#x},size={:#x},flags={:#x}}}", m.vaddr, m.iova,
                         m.size, m.flags);
    }
    case VFIO_IOMMU_UNMAP_DMA: {
      vfio_iommu_type1_dma_unmap u;
      if (!as(arg, u)) return "VFIO_IOMMU_UNMAP_DMA";
      return fmt::format("VFIO_IOMMU_UNMAP_DMA{{iova={:#x},size={:#x}}}", u.iova, u.size);
    }
    case VFIO_IOMMU_SPAPR_REGISTER_MEMORY:
    case VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY: {
      const char* name = cmd == VFIO_IOMMU_SPAPR_REGISTER_MEMORY ? "VFIO_IOMMU_SPAPR_REGISTER_MEMORY"
                                                                  : "VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY";
      vfio_iommu_spapr_register_memory r;
      if (!as(arg, r)) return name;
      return fmt::format("{}{{vaddr={:#x},size={:#x}}}", name, r.vaddr, r.size);
    }
    case VFIO_IOMMU_ENABLE: return "VFIO_IOMMU_ENABLE";
    case VFIO_IOMMU_DISABLE: return "VFIO_IOMMU_DISABLE";
    case VFIO_EEH_PE_OP: {
      vfio_eeh_pe_op op;
      if (!as(arg, op)) return "VFIO_EEH_PE_OP";
      return fmt::format("VFIO_EEH_PE_OP{{op={}}}", op.op);
    }
    case VFIO_IOMMU_SPAPR_TCE_CREATE: {
      vfio_iommu_spapr_tce_create c;
      if (!as(arg, c)) return "VFIO_IOMMU_SPAPR_TCE_CREATE";
      return fmt::format("VFIO_IOMMU_SPAPR_TCE_CREATE{{page_shift={},window_size={:#x},levels={},start_addr={:#x}}}",
                         c.page_shift, c.window_size, c.levels, c.start_addr);
    }
    case VFIO_IOMMU_SPAPR_TCE_REMOVE: {
      vfio_iommu_spapr_tce_remove r;
      if (!as(arg, r)) return "VFIO_IOMMU_SPAPR_TCE_REMOVE";
      return fmt::format("VFIO_IOMMU_SPAPR_TCE_REMOVE{{start_addr={:#x}}}", r.start_addr);
    }
    default: return fmt::format("ioctl({:#x})", cmd);
  }
}

std::string group_call(unsigned long cmd, unsigned long arg) {
  switch (cmd) {
    case VFIO_GROUP_GET_STATUS: return "VFIO_GROUP_GET_STATUS";
    case VFIO_GROUP_SET_CONTAINER: {
      int32_t fd;
      return as(arg, fd) ? fmt::format("VFIO_GROUP_SET_CONTAINER(fd {})", fd) : "VFIO_GROUP_SET_CONTAINER";
    }
    case VFIO_GROUP_UNSET_CONTAINER: return "VFIO_GROUP_UNSET_CONTAINER";
    case VFIO_GROUP_GET_DEVICE_FD: {
      const auto name = mm::copy_string_from_client(arg, 65);
      return name ? fmt::format("VFIO_GROUP_GET_DEVICE_FD(\"{}\")", *name) : "VFIO_GROUP_GET_DEVICE_FD";
    }
    default: return fmt::format("ioctl({:#x})", cmd);
  }
}

std::string device_call(unsigned long cmd, unsigned long arg, bool ok) {
  switch (cmd) {
    case VFIO_DEVICE_GET_INFO: return "VFIO_DEVICE_GET_INFO";
    case VFIO_DEVICE_GET_REGION_INFO: {
      vfio_region_info i;
      if (!as(arg, i)) return "VFIO_DEVICE_GET_REGION_INFO";
      if (!ok) return fmt::format("VFIO_DEVICE_GET_REGION_INFO{{index={}}}", i.index);
      return fmt::format("VFIO_DEVICE_GET_REGION_INFO{{index={},argsz={},flags={:#x},cap_offset={},size={:#x}}}",
                         i.index, i.argsz, i.flags, i.cap_offset, i.size);
    }
    case VFIO_DEVICE_GET_IRQ_INFO:
      if (vfio_irq_info i; as(arg, i)) return fmt::format("VFIO_DEVICE_GET_IRQ_INFO{{index={}}}", i.index);
      return "VFIO_DEVICE_GET_IRQ_INFO";
    case VFIO_DEVICE_SET_IRQS: {
      vfio_irq_set s;
      if (!as(arg, s)) return "VFIO_DEVICE_SET_IRQS";
      return fmt::format("VFIO_DEVICE_SET_IRQS{{index={},flags={:#x},start={},count={}}}", s.index, s.flags,
                         s.start, s.count);
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
