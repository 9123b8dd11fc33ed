// The device models of a Machine: one per PCI function (a GV100 GPU model, an NVLink2 bridge model), the GPU RAM
// behind each GPU window, the ATSD register blocks of the NPUs, NVLink training state, and the HMI log.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "base/errno.h"
#include "platform/gpu_ram.h"
#include "platform/hmi_log.h"
#include "platform/link_state.h"
#include "platform/machine.h"
#include "platform/pci_device_model.h"

namespace nv2pt::platform {

// LinkState and to_string(LinkState) live in platform/link_state.h (the bridge model needs them too).

// MSR bits an NPU context is initialised with (OPAL_NPU_INIT_CONTEXT): data relocation, problem state, hypervisor.
inline constexpr uint64_t kMsrDr = 1ull << 4, kMsrPr = 1ull << 14, kMsrHv = 1ull << 60;

struct HardwareOptions {
  HmiPolicy hmi_policy = HmiPolicy::kFatal;
};

class Hardware {
 public:
  static Result<std::unique_ptr<Hardware>> create(const Machine& machine, HardwareOptions options = {});
  ~Hardware();

  const Machine& machine() const;
  // The model of a function; nullptr if the machine has no such function.
  PciDeviceModel* device(const PciAddress& address);
  // The RAM behind a GPU's window; nullptr for a GPU without a (well-formed) memory node.
  GpuRam* gpu_ram(const PciAddress& gpu);
  // State of the link behind an NVLink bridge; nullopt if `bridge` is not a bridge.
  std::optional<LinkState> link_state(const PciAddress& bridge) const;
  // Whether every NVLink of the GPU is trained (false for a GPU without bridges).
  bool gpu_links_trained(const PciAddress& gpu) const;
  // The 64 KiB ATSD register block at host physical address `hpa` (an ibm,mmio-atsd entry): its memfd for mmap,
  // and register access for pread/pwrite. nullopt / EINVAL for an address that is no ATSD block.
  std::optional<int> atsd_fd(uint64_t hpa) const;
  Result<void> atsd_read(uint64_t hpa, uint64_t offset, std::span<std::byte> out);
  Result<void> atsd_write(uint64_t hpa, uint64_t offset, std::span<const std::byte> in);

  HmiLog& hmi_log();
  void set_hmi_policy(HmiPolicy policy);

  // The NPU's OPAL calls for a GPU's address translation context (OPAL_NPU_MAP_LPAR 148, OPAL_NPU_INIT_CONTEXT
  // 146, OPAL_NPU_DESTROY_CONTEXT 147), recorded in order so tests can see what the driver did: the latest
  // kOpalCallsKept (every group attach and detach makes two, for as long as the host lives).
  struct OpalNpuCall {
    enum Kind { kMapLpar, kInitContext, kDestroyContext } kind;
    PciAddress gpu;
    uint64_t lpid = 0;  // MAP_LPAR
    uint64_t msr = 0;   // INIT_CONTEXT
  };
  // Map LPAR (pnv_npu2_map_lpar_dev; docs/kernel/kvm.md#lpar-mapping): MAP_LPAR(lpid) then INIT_CONTEXT(msr, of
  // kMsrDr/kMsrPr/kMsrHv). ENODEV for a GPU without NPU links.
  Result<void> npu_map_lpar(const PciAddress& gpu, uint64_t lpid, uint64_t msr);
  // Unmap LPAR: DESTROY_CONTEXT then MAP_LPAR(0).
  Result<void> npu_unmap_lpar(const PciAddress& gpu);
  // The LPID the GPU's ATS context is mapped to (0 = the host).
  uint64_t npu_lpid(const PciAddress& gpu) const;
  static constexpr size_t kOpalCallsKept = 1024;
  std::vector<OpalNpuCall> opal_npu_calls() const;  // the kept ones, oldest first

 private:
  struct Impl;
  explicit Hardware(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace nv2pt::platform
