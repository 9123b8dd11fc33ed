// The NVLink2 extra regions of vfio_pci_nvlink2.c (v5.0–v5.12): GPU RAM on the GPU (type 0x800010de/1) and the
// ATSD register block on each bridge (type 0x80001014/1), created at device enable from the device tree exactly as
// the kernel reads it, with the kernel's errors (ENODEV = "not an NVLink2 device": the open goes on without the
// region).
#pragma once

#include <memory>

#include "platform/hardware.h"
#include "platform/machine.h"
#include "vfio/extra_region.h"

namespace nv2pt::vfio {

inline constexpr uint32_t kNvidiaGpuRamRegionType = VFIO_REGION_TYPE_PCI_VENDOR_TYPE | 0x10de;
inline constexpr uint32_t kIbmAtsdRegionType = VFIO_REGION_TYPE_PCI_VENDOR_TYPE | 0x1014;

// vfio_pci_nvdia_v100_nvlink2_init (docs/kernel/regions.md#gpu-ram-init): ENODEV without NPU #0 or memory-region;
// EINVAL for an unresolvable memory-region or a reg that is not two u64 cells; EFAULT without ibm,device-tgt-addr. With
// `kvm_lpid` the GPU is mapped to that guest in the NPU (MAP_LPAR + INIT_CONTEXT with MSR DR|PR); the region's release
// maps it back to the host.
Result<std::unique_ptr<ExtraRegion>> make_gpu_ram_region(const platform::Machine& machine,
                                                         platform::Hardware& hardware, const platform::Gpu& gpu,
                                                         std::optional<uint64_t> kvm_lpid = std::nullopt);

// vfio_pci_ibm_npu2_init (docs/kernel/regions.md#atsd-init): ENODEV without a GPU partner, memory-region or link index
// (and, as this model's choice, without any ATSD block: QEMU 7.2 aborts on a size-0 ATSD region carrying a tgt); EFAULT
// without ibm,device-tgt-addr or ibm,nvlink-speed. A missing ibm,mmio-atsd entry for the link falls back to entry 0
// (v5.7+).
Result<std::unique_ptr<ExtraRegion>> make_atsd_region(const platform::Machine& machine, platform::Hardware& hardware,
                                                      const platform::NvlinkBridge& bridge);

}  // namespace nv2pt::vfio
