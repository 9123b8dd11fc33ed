// The POWER9 host as a device tree describes it: chips, PHBs, PCI functions, GPUs with their memory windows,
// NVLink bridges and links, host RAM.
//
// The machine keeps its DeviceTree, and every object keeps its node offset: the vfio layer reads the NPU
// properties itself at device-open time, as the kernel does, with the kernel's errors for missing ones.
// Objects refer to each other by index into the Machine's lists, so a Machine can be moved freely.
//
// Everything is fixed after load() except the host driver binding of each PCI function (driver / set_driver),
// which is guarded by its own lock.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/errno.h"
#include "platform/chip.h"
#include "platform/device_tree.h"
#include "platform/gpu.h"
#include "platform/gpu_memory.h"
#include "platform/memory_range.h"
#include "platform/nvlink_bridge.h"
#include "platform/nvlink_link.h"
#include "platform/pci_address.h"
#include "platform/pci_function.h"
#include "platform/phb.h"
#include "platform/topology_error.h"

namespace nv2pt::platform {

struct LoadOptions {
  // Reject inconsistent or incomplete topologies (see Machine::load). Off: only what is needed to build the
  // object graph is checked, so tests can build the kernel's bad-DT cases (a bridge without ATSD or
  // ibm,nvlink-speed, a GPU without ibm,npu, a 3-cell memory reg, ...).
  bool validate = true;
};

class Machine {
 public:
  // Always rejected (the object graph cannot be built): a PHB without a readable ibm,opal-phbid; a PCI function
  // without a 5-cell reg, vendor-id, device-id or class-code; two functions with the same address; a memory
  // range whose base + size wraps.
  //
  // With options.validate (the default) also rejected, each with a message "<node path>: <property>: <problem>":
  //  - a bridge whose ibm,gpu, memory-region or ibm,nvlink is missing, resolves to no node, or to a node of the
  //    wrong kind; a bridge without ibm,device-tgt-addr (one u64) or ibm,nvlink-speed; a link without
  //    ibm,npu-link-index;
  //  - a GPU whose ibm,npu entries do not point back (the bridge's ibm,gpu names another node), a bridge
  //    missing from its GPU's ibm,npu, a GPU with ibm,npu whose bridges lead to no memory node or to
  //    different ones, or disagree on the TGT; two GPUs sharing a memory node;
  //  - a memory node whose reg is not exactly <base size> (2 u64 cells), has size 0, or is not 64 KiB aligned;
  //    nv2pt,real-memory-size of 0 or larger than the window; GPU windows overlapping each other or host RAM;
  //  - a PCI function without nv2pt,iommu-group.
  // Not rejected: a short or missing ibm,mmio-atsd (the kernel falls back to entry 0 or to no ATSD), a PCIe GPU
  // without ibm,npu (a plain PCIe GPU without NVLink).
  static TopologyResult<Machine> load(DeviceTree tree, LoadOptions options = {});

  // The embedded default topology (the seed's 6-GPU Witherspoon), validated.
  static Machine load_default();

  Machine(Machine&&) noexcept;
  Machine& operator=(Machine&&) noexcept;
  ~Machine();

  const DeviceTree& device_tree() const { return tree_; }

  std::span<const Chip> chips() const { return chips_; }
  std::span<const MemoryRange> host_memory() const { return host_memory_; }
  std::span<const Phb> phbs() const { return phbs_; }
  std::span<const PciFunction> pci_functions() const { return functions_; }  // sorted by address
  std::span<const Gpu> gpus() const { return gpus_; }                         // in address order
  std::span<const NvlinkBridge> bridges() const { return bridges_; }          // in address order
  std::span<const GpuMemory> gpu_memories() const { return gpu_memories_; }   // in tree order
  std::span<const NvlinkLink> links() const { return links_; }                // in tree order

  const PciFunction* find_function(const PciAddress& address) const;
  const Gpu* find_gpu(const PciAddress& address) const;
  const NvlinkBridge* find_bridge(const PciAddress& address) const;

  const Phb& phb_of(const PciFunction& function) const { return phbs_[function.phb]; }
  const PciFunction& function_of(const Gpu& gpu) const { return functions_[gpu.function]; }
  const PciFunction& function_of(const NvlinkBridge& bridge) const { return functions_[bridge.function]; }
  const GpuMemory* memory_of(const Gpu& gpu) const;
  const Gpu* gpu_of(const NvlinkBridge& bridge) const;
  const NvlinkLink* link_of(const NvlinkBridge& bridge) const;

  // ibm,mmio-atsd[link index] of the bridge's PHB; nullopt if the link index or that entry is missing.
  // (The kernel's fallback to entry 0 is the vfio driver's business, not the machine's.)
  std::optional<uint64_t> atsd_address(const NvlinkBridge& bridge) const;

  // IOMMU group numbers in use, ascending, and the functions of one group in address order.
  std::vector<uint32_t> iommu_groups() const;
  std::vector<const PciFunction*> functions_in_group(uint32_t group) const;

  // Host driver bound to a function: "vfio-pci", "nvidia", ..., "" for none (nv2pt,driver at load). nullopt if
  // there is no such function.
  std::optional<std::string> driver(const PciAddress& address) const;
  // Rebinds a function (unbind with ""). ENODEV if there is no such function.
  Result<void> set_driver(const PciAddress& address, std::string driver);

 private:
  class Builder;  // machine_builder.cc
  struct DriverBindings;

  explicit Machine(DeviceTree tree);
  void set_drivers(std::vector<std::string> drivers);

  DeviceTree tree_;
  std::vector<Chip> chips_;
  std::vector<MemoryRange> host_memory_;
  std::vector<Phb> phbs_;
  std::vector<PciFunction> functions_;
  std::vector<Gpu> gpus_;
  std::vector<NvlinkBridge> bridges_;
  std::vector<GpuMemory> gpu_memories_;
  std::vector<NvlinkLink> links_;
  std::unique_ptr<DriverBindings> drivers_;  // parallel to functions_; heap-held so the lock survives moves
};

}  // namespace nv2pt::platform
