// The emulated PCI device skiboot presents for one NVLink2 brick of a POWER9 NPU (IBM 1014:04ea, class 0x0680):
// a 256-byte config space with the NTL and GENID BARs, a PCIe endpoint capability that advertises FLR, and the
// vendor-specific capability that carries skiboot's hardware-procedure interface. Training the link means running
// procedures through that interface, with config writes only:
//
//   write the procedure number (4 bytes) to kProcControl, then poll kProcStatus (4-byte reads) until bit 30
//   (complete) is set; bits 3:0 then hold the completion code (0 success, 2 permanent failure, 3 aborted,
//   4 unsupported). Bit 31 reads as set while the procedure is in progress. A read of the status register is what
//   lets firmware make progress (skiboot runs the procedure's steps from that read).
//
// When the link counts as trained (this model's decision, see npu2_bridge.cc): RX_TRAINING (9) completes
// successfully after PHY_RESET (4) and RX_DCCAL (6) have completed since the last reset, and TX_ZCAL (5) has
// completed at least once on this PHY. skiboot accepts the procedures in any order; the others (7, 8, 10-13) are
// accepted at any point and do not change the link state. A link goes back to untrained on a bridge FLR (the
// PCIe device-control write), a bridge reset() of either kind, or a reset of its GPU (gpu_reset()).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>

#include "base/thread_annotations.h"
#include "platform/config_space.h"
#include "platform/link_state.h"
#include "platform/pci_device_model.h"
#include "platform/sparse_memfd.h"

namespace nv2pt::platform {

class Npu2Bridge : public PciDeviceModel {
 public:
  struct Identity {
    uint16_t vendor_id = 0x1014;
    uint16_t device_id = 0x04ea;
    uint8_t revision = 0x01;
    uint32_t class_code = 0x068000;
  };
  struct Placement {
    uint32_t chip_id = 0;     // selects the chip's MMIO space (chip << 42)
    uint32_t link_index = 0;  // ibm,npu-link-index 0..5: brick, stack and NTL BAR
  };

  // Config space layout (skiboot hw/npu2.c).
  static constexpr uint32_t kConfigSize = 0x100;
  static constexpr uint32_t kPcieCap = 0x40;
  static constexpr uint32_t kVendorCap = 0x80;
  static constexpr uint32_t kProcStatus = kVendorCap + 0x4;
  static constexpr uint32_t kProcControl = kVendorCap + 0x8;
  static constexpr uint32_t kLinkIndex = kVendorCap + 0xc;
  static constexpr uint32_t kLinkFlags = kVendorCap + 0xd;  // "PCI Dev Flag"
  static constexpr uint8_t kVendorCapLength = 0x10;
  static constexpr uint8_t kVendorCapVersion = 0x01;
  static constexpr uint8_t kLinkFlagPciLinked = 0x1;  // a GPU was bound to this link
  static constexpr uint8_t kLinkFlagDlReset = 0x2;    // the NTL/DL reset procedure has run since the last reset

  // Procedure numbers (skiboot npu_procedures[], doc/nvlink.rst).
  enum Procedure : uint32_t {
    kAbort = 0,
    kNop = 1,
    kPhyReset = 4,
    kPhyTxZcal = 5,
    kPhyRxDccal = 6,
    kPhyTxRxcalEnable = 7,
    kPhyTxRxcalDisable = 8,
    kPhyRxTraining = 9,
    kResetNtl = 10,
    kPreTerminate = 11,
    kTerminate = 12,
    kCheckCredits = 13,
  };
  static constexpr uint32_t kProcedureCount = 14;
  // Status register.
  static constexpr uint32_t kStatusInProgress = 1u << 31;
  static constexpr uint32_t kStatusComplete = 1u << 30;
  static constexpr uint32_t kStatusCodeMask = 0xf;
  static constexpr uint32_t kCodeSuccess = 0;
  static constexpr uint32_t kCodeTransientFailure = 1;
  static constexpr uint32_t kCodePermanentFailure = 2;
  static constexpr uint32_t kCodeAborted = 3;
  static constexpr uint32_t kCodeUnsupported = 4;

  // BARs (64-bit, non-prefetchable): BAR0/1 the brick's NTL registers (128 KiB: DL at +0, NTL at +64 KiB),
  // BAR2/3 the brick's half of its stack's GENID register block (64 KiB).
  static constexpr uint64_t kNtlBarSize = 0x20000;
  static constexpr uint64_t kGenidBarSize = 0x10000;

  static Result<std::unique_ptr<Npu2Bridge>> create(PciAddress address, Identity identity, Placement placement);

  uint32_t config_size() const override { return kConfigSize; }
  uint32_t config_read(uint32_t offset, unsigned size) override;
  void config_write(uint32_t offset, unsigned size, uint32_t value) override;
  Bar bar(int index) const override;
  Result<void> bar_read(int index, uint64_t offset, std::span<std::byte> out) override;
  Result<void> bar_write(int index, uint64_t offset, std::span<const std::byte> in) override;
  int bar_fd(int index) const override;
  bool has_flr() const override { return true; }
  // Either kind is skiboot's npu2_dev_procedure_reset: the brick is fenced, the link drops to untrained and the
  // DL-reset flag clears. Config registers keep their values (skiboot's emulated space does not reset them).
  void reset(ResetKind kind) override;

  // The GPU behind this link was reset (skiboot traps the secondary bus reset of the GPU's slot and resets every
  // brick of that GPU first, to avoid the HMIs a GPU reset under live links causes).
  void gpu_reset();
  void set_pci_linked(bool linked);

  LinkState link_state() const { return link_state_.load(std::memory_order_acquire); }
  // Called after any access that changed link_state(), once the bridge's lock is released (the owner of the GPU's
  // RAM re-checks its training rule there).
  void set_link_listener(std::function<void()> listener);
  // Initial value of BAR0/BAR2 (host physical addresses, from skiboot's Nimbus phys-map).
  uint64_t ntl_base() const { return ntl_base_; }
  uint64_t genid_base() const { return genid_base_; }

 private:
  Npu2Bridge(PciAddress address, Identity identity, Placement placement);
  void init_config() NV2PT_REQUIRES(mutex_);
  uint32_t procedure_status_read() NV2PT_REQUIRES(mutex_);
  void procedure_control_write(uint32_t value) NV2PT_REQUIRES(mutex_);
  uint32_t run_step() NV2PT_REQUIRES(mutex_);
  void procedure_reset() NV2PT_REQUIRES(mutex_);
  uint32_t bar_register_read(uint32_t offset, unsigned size) NV2PT_REQUIRES(mutex_);
  void bar_register_write(uint32_t offset, unsigned size, uint32_t value) NV2PT_REQUIRES(mutex_);
  void set_flags(uint8_t flags) NV2PT_REQUIRES(mutex_);
  class LinkWatch;

  struct BarState {
    uint64_t base = 0;
    uint64_t size = 0;
    bool sizing = false;     // an all-ones write armed a size read
    bool sizing_hi = false;  // ... of the upper half
  };

  const Identity identity_;
  const Placement placement_;
  const uint64_t ntl_base_;
  const uint64_t genid_base_;
  mutable Mutex mutex_;
  ConfigSpace config_ NV2PT_GUARDED_BY(mutex_);
  BarState bars_[2] NV2PT_GUARDED_BY(mutex_);  // [0] NTL (BAR0/1), [1] GENID (BAR2/3)
  uint32_t procedure_number_ NV2PT_GUARDED_BY(mutex_) = 0;
  uint32_t procedure_status_ NV2PT_GUARDED_BY(mutex_) = 0;
  unsigned procedure_polls_ NV2PT_GUARDED_BY(mutex_) = 0;  // status reads since the procedure started
  uint8_t link_flags_ NV2PT_GUARDED_BY(mutex_) = 0;
  bool phy_reset_done_ NV2PT_GUARDED_BY(mutex_) = false;  // since the last reset
  bool rx_dccal_done_ NV2PT_GUARDED_BY(mutex_) = false;  // since the last reset
  bool tx_zcal_done_ NV2PT_GUARDED_BY(mutex_) = false;  // once per PHY, survives resets (skiboot tx_zcal_complete)
  std::atomic<LinkState> link_state_{LinkState::kUntrained};
  Mutex listener_mutex_;
  std::function<void()> on_link_change_ NV2PT_GUARDED_BY(listener_mutex_);
  SparseMemfd ntl_memfd_;
  SparseMemfd genid_memfd_;
};

}  // namespace nv2pt::platform
