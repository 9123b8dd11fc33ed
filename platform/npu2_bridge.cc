#include "platform/npu2_bridge.h"

// Sources (facts only; see the header for the interface):
//  [NPU2]  open-power/skiboot hw/npu2.c: npu2_populate_cfg / npu2_populate_pcie_cap / npu2_populate_vendor_cap
//          (header values, masks, capability offsets 0x40 and 0x80, VENDOR_CAP_LEN 0x10, VENDOR_CAP_VERSION 0x01,
//          VENDOR_CAP_PCI_DEV_OFFSET 0x0d, link index at +0xc, 256-byte config space), npu2_cfg_write_bar /
//          npu2_cfg_read_bar (BAR sizing returns the size itself, one-shot, 4-byte accesses only; base changes
//          refused while the BAR is enabled), npu2_cfg_write_cmd (MEM enable switches the NTL/GENID BARs),
//          npu2_dev_cfg_exp_devcap (a 2-byte device-control write with the FLR bit runs the procedure reset),
//          npu2_gpu_bridge_sec_bus_reset (a GPU slot reset resets every brick of that GPU first),
//          npu2_read_bar (NTL BAR size 0x10000 << 1 = 128 KiB; GENID split in two 64 KiB halves, brick 1 at +64 KiB).
//  [PROC]  open-power/skiboot hw/npu2-hw-procedures.c: npu_procedures[] (0 stop, 1 nop, 2-3 none, 4 phy_reset,
//          5 phy_tx_zcal, 6 phy_rx_dccal, 7 phy_enable_tx_rxcal, 8 phy_disable_tx_rxcal, 9 phy_rx_training,
//          10 reset_ntl, 11-12 nop placeholders, 13 check_credits), PROCEDURE_INPROGRESS bit 31, COMPLETE bit 30,
//          codes FAILED 2 / ABORTED 3 / UNSUPPORTED 4, status mask 0xc000000f, status at cap+4 and control at
//          cap+8 (4-byte accesses only, status writes ignored), status reads run the procedure's steps,
//          tx_zcal runs once per PHY, reset_ntl sets the DL_RESET link flag, npu2_dev_procedure_reset clears it.
//  [DOC]   open-power/skiboot doc/nvlink.rst: status bit 31 in progress / bit 30 complete / bits 3:0 code
//          (0 success, 1 transient, 2 permanent, 3 aborted, 4 unsupported); PCI Dev Flag bit 0 = GPU bound.
//  [MAP]   open-power/skiboot hw/phys-map.c (Nimbus): NPU_NTL i at 0x0006030201600000 + i * 128 KiB,
//          NPU_GENID stack s at 0x00060302016c0000 + s * 128 KiB; chip_select_shift 42.
//  [NVDBG] NVIDIA's ibmnpu.h (public debugger sources): vendor cap id 9, PROC_STATUS +0x4, PROC_CONTROL +0x8,
//          BRICK_NUM +0xc, procedures 0x4..0xA named PHY_RESET .. DL_RESET as above.
// The vendor/device/revision/class come from the topology. (skiboot's own header word at 0x08 is 0x06800101,
// i.e. prog-if 0x01; the default topology and NVIDIA's ibmnpu.h say class 0x068000.)
//
// Decision (not in the sources): skiboot has no notion of "trained"; this model calls the link trained when
// RX_TRAINING (9, "I/O PHY upstream link training", whose last step waits for RX_INIT_DONE on every lane, the
// last handshake with the GPU in skiboot's table) completes after PHY_RESET (4) and RX_DCCAL (6) since the last
// reset and TX_ZCAL (5) once. Without them RX_INIT_DONE never comes and skiboot reports FAILED (2) after its 1 s
// timeout; the model has no clock and fails on the kTimeoutPolls-th status read instead. Steps that wait on
// hardware (4, 5, 6, 9) report in-progress on the first status read, so the Training state is observable.

#include <algorithm>

namespace nv2pt::platform {

namespace {

constexpr uint32_t kCommand = 0x04;
constexpr uint32_t kBar0 = 0x10;
constexpr uint32_t kBar2 = 0x18;
constexpr uint32_t kDevCtl = Npu2Bridge::kPcieCap + 0x8;
constexpr uint16_t kDevCtlFlr = 0x8000;
constexpr uint32_t kStatusMask = 0xc000000f;  // [PROC] bits exposed to the OS
constexpr unsigned kTimeoutPolls = 4;
constexpr uint64_t kNtlMap = 0x0006030201600000ull;    // [MAP]
constexpr uint64_t kGenidMap = 0x00060302016c0000ull;  // [MAP]
constexpr unsigned kChipSelectShift = 42;              // [MAP]

bool is_training_procedure(uint32_t p) {
  return p == Npu2Bridge::kPhyReset || p == Npu2Bridge::kPhyTxZcal || p == Npu2Bridge::kPhyRxDccal ||
         p == Npu2Bridge::kPhyRxTraining;
}

}  // namespace

Result<std::unique_ptr<Npu2Bridge>> Npu2Bridge::create(PciAddress address, Identity identity, Placement placement) {
  if (placement.link_index > 5) return fail(kEINVAL);
  std::unique_ptr<Npu2Bridge> bridge(new Npu2Bridge(address, identity, placement));
  const std::string base = "nv2pt-npu2-" + address.to_string();
  bridge->ntl_memfd_ = NV2PT_TRY(SparseMemfd::create(base + "-ntl", kNtlBarSize));
  bridge->genid_memfd_ = NV2PT_TRY(SparseMemfd::create(base + "-genid", kGenidBarSize));
  return bridge;
}

Npu2Bridge::Npu2Bridge(PciAddress address, Identity identity, Placement placement)
    : PciDeviceModel(address),
      identity_(identity),
      placement_(placement),
      ntl_base_((uint64_t{placement.chip_id} << kChipSelectShift) + kNtlMap + placement.link_index * kNtlBarSize),
      genid_base_((uint64_t{placement.chip_id} << kChipSelectShift) + kGenidMap +
                  (placement.link_index / 2) * 2 * kGenidBarSize + (placement.link_index % 2) * kGenidBarSize) {
  MutexLock lock(mutex_);
  bars_[0] = {.base = ntl_base_, .size = kNtlBarSize};
  bars_[1] = {.base = genid_base_, .size = kGenidBarSize};
  init_config();
}

void Npu2Bridge::init_config() {
  config_.init(0x00, 2, identity_.vendor_id);
  config_.init(0x02, 2, identity_.device_id);
  // Command/status: [NPU2] value 0x00100000, read-only mask 0xffb802b8, RW1C 0xf9000000.
  config_.init(kCommand, 4, 0x00100000, ~0xffb802b8u, 0xf9000000);
  config_.init(0x08, 1, identity_.revision);
  config_.init(0x09, 1, identity_.class_code & 0xff);
  config_.init(0x0a, 2, static_cast<uint16_t>(identity_.class_code >> 8));
  config_.init(0x0c, 4, 0x00800000);  // header type 0x80: the bricks of one GPU are functions of one device
  config_.init(0x20, 4, 0);           // BAR4/5 not implemented
  config_.init(0x24, 4, 0);
  config_.init(0x28, 4, 0);
  config_.init(0x2c, 4, 0);           // no subsystem ids
  config_.init(0x30, 4, 0xffffffff);  // [NPU2] "ROM BAR, zero sized": read-only all-ones
  config_.init(0x3c, 4, 0x00000100);  // [NPU2] interrupt pin A, line read-only

  // PCIe capability (v2 endpoint) at 0x40, then the vendor capability at 0x80. [NPU2]
  config_.add_capability(kPcieCap, 0x10);
  config_.init(kPcieCap + 0x02, 2, 0x0002);
  // Device capabilities: MPS 128, no phantom functions, L0s/L1 acceptable latency "no limit" (7), FLR.
  config_.init(kPcieCap + 0x04, 4, (7u << 6) | (7u << 9) | (1u << 28));
  config_.init(kPcieCap + 0x08, 4, 0x00002810, 0x0000ffff, 0x000f0000);
  config_.init(kPcieCap + 0x0c, 4, 0x2 | (0x1 << 4));  // link capabilities: vector bit 2 (5 GT/s), x1
  config_.init(kPcieCap + 0x10, 4, 0x00130000, 0x00000fff, 0xc0000000);
  config_.init(kPcieCap + 0x14, 4, 0);
  config_.init(kPcieCap + 0x18, 4, 0);
  config_.init(kPcieCap + 0x1c, 4, 0, 0x0000001f);
  config_.init(kPcieCap + 0x20, 4, 0, 0, 0x00010000);
  config_.init(kPcieCap + 0x24, 4, 0);
  config_.init(kPcieCap + 0x28, 4, 0x00070000, 0x0000ffff);
  config_.init(kPcieCap + 0x2c, 4, 0x00000007);
  config_.init(kPcieCap + 0x30, 4, 0x00000003, 0x0000ffff, 0x00200000);
  config_.init(kPcieCap + 0x34, 4, 0);
  config_.init(kPcieCap + 0x38, 4, 0);

  config_.add_capability(kVendorCap, 0x09);
  config_.init(kVendorCap + 2, 1, kVendorCapLength);
  config_.init(kVendorCap + 3, 1, kVendorCapVersion);
  config_.init(kProcStatus, 4, 0);   // defaults for accesses the trap refuses (not 4 bytes)
  config_.init(kProcControl, 4, 0);
  config_.init(kLinkIndex, 1, placement_.link_index);
  config_.init(kLinkFlags, 1, link_flags_);
}

void Npu2Bridge::set_flags(uint8_t flags) {
  link_flags_ = flags;
  config_.set(kLinkFlags, 1, flags);
}

// Notes the link state when an access begins and tells the listener, after the access released the bridge's lock
// (it is declared before the lock), if the state is not the same any more.
class Npu2Bridge::LinkWatch {
 public:
  explicit LinkWatch(Npu2Bridge& bridge) : bridge_(bridge), before_(bridge.link_state()) {}
  ~LinkWatch() {
    if (bridge_.link_state() == before_) return;
    std::function<void()> listener;
    {
      MutexLock lock(bridge_.listener_mutex_);
      listener = bridge_.on_link_change_;
    }
    if (listener) listener();
  }
  LinkWatch(const LinkWatch&) = delete;
  LinkWatch& operator=(const LinkWatch&) = delete;

 private:
  Npu2Bridge& bridge_;
  const LinkState before_;
};

void Npu2Bridge::set_link_listener(std::function<void()> listener) {
  MutexLock lock(listener_mutex_);
  on_link_change_ = std::move(listener);
}

uint32_t Npu2Bridge::config_read(uint32_t offset, unsigned size) {
  LinkWatch watch(*this);  // a status read runs the procedure's steps: RX_TRAINING completes here
  MutexLock lock(mutex_);
  if (offset >= kConfigSize) return 0xffffffffu;
  if (offset >= kBar0 && offset < kBar0 + 16) return bar_register_read(offset, size);
  if (offset >= kProcStatus && offset < kProcControl + 4) {
    if (size != 4) return 0;  // [PROC] short reads are refused; the RO defaults are 0
    return offset == kProcStatus ? procedure_status_read() : procedure_number_;
  }
  return config_.read(offset, size);
}

void Npu2Bridge::config_write(uint32_t offset, unsigned size, uint32_t value) {
  LinkWatch watch(*this);  // a procedure start or an FLR takes the link down
  MutexLock lock(mutex_);
  if (offset >= kConfigSize) return;
  if (offset >= kBar0 && offset < kBar0 + 16) {
    bar_register_write(offset, size, value);
    return;
  }
  if (offset >= kProcStatus && offset < kProcControl + 4) {
    // [PROC] 4-byte writes only; the status register ignores writes.
    if (size == 4 && offset == kProcControl) procedure_control_write(value);
    return;
  }
  if (offset == kDevCtl || offset == kDevCtl + 1) {
    // [NPU2] the device-control trap takes 2-byte aligned writes only.
    if (size != 2 || offset != kDevCtl) return;
    if (value & kDevCtlFlr) procedure_reset();
    config_.write(offset, size, value & ~uint32_t{kDevCtlFlr});  // the initiate-FLR bit always reads 0
    return;
  }
  config_.write(offset, size, value);
}

uint32_t Npu2Bridge::bar_register_read(uint32_t offset, unsigned size) {
  BarState& bar = bars_[offset < kBar2 ? 0 : 1];
  const uint32_t reg_start = offset & ~3u;
  const bool upper = ((offset - kBar0) / 4) % 2 == 1;
  if (bar.sizing) {
    // [NPU2] the next read of the pair returns the size (not a mask), then the trap disarms.
    if (size != 4 || offset != reg_start) return 0xffffffffu;
    bar.sizing = false;
    const uint32_t v = bar.sizing_hi ? static_cast<uint32_t>(bar.size >> 32) : static_cast<uint32_t>(bar.size);
    bar.sizing_hi = false;
    return v;
  }
  const uint32_t reg = upper ? static_cast<uint32_t>(bar.base >> 32)
                             : (static_cast<uint32_t>(bar.base) & 0xfffffff0u) | 0x4;  // 64-bit memory BAR
  const unsigned shift = 8 * (offset - reg_start);
  const uint32_t mask = size >= 4 ? 0xffffffffu : ((1u << (8 * size)) - 1);
  return (reg >> shift) & mask;
}

void Npu2Bridge::bar_register_write(uint32_t offset, unsigned size, uint32_t value) {
  if (size != 4 || (offset & 3) != 0) return;  // [NPU2] refused
  BarState& bar = bars_[offset < kBar2 ? 0 : 1];
  const bool upper = ((offset - kBar0) / 4) % 2 == 1;
  if (value == 0xffffffffu) {
    bar.sizing = true;
    bar.sizing_hi = upper;
    return;
  }
  const uint64_t base = upper ? (bar.base & 0xffffffffull) | (uint64_t{value} << 32)
                              : (bar.base & ~0xffffffffull) | (value & 0xfffffff0u);
  const bool enabled = (config_.read(kCommand, 2) & 0x2) != 0;
  if (enabled && base != bar.base) return;  // [NPU2] no moving an enabled BAR
  bar.base = base;
}

void Npu2Bridge::procedure_control_write(uint32_t value) {
  if (value >= kProcedureCount || value == 2 || value == 3) {
    // [PROC] the number register keeps the previous procedure.
    procedure_status_ = kStatusComplete | kCodeUnsupported;
    return;
  }
  procedure_number_ = value;
  procedure_status_ = kStatusInProgress;
  procedure_polls_ = 0;
  if (value == kPhyReset) {
    phy_reset_done_ = false;
    rx_dccal_done_ = false;
  }
  if (value == kPhyRxDccal) rx_dccal_done_ = false;
  // A PHY procedure that retrains takes a trained link down until RX_TRAINING completes again.
  if (is_training_procedure(value) && !(value == kPhyTxZcal && link_state() == LinkState::kTrained))
    link_state_.store(LinkState::kTraining, std::memory_order_release);
}

uint32_t Npu2Bridge::procedure_status_read() {
  if (procedure_status_ & kStatusComplete) return procedure_status_;
  procedure_status_ = run_step() & kStatusMask;
  return procedure_status_;
}

uint32_t Npu2Bridge::run_step() {
  ++procedure_polls_;
  const bool waited = procedure_polls_ >= 2;  // steps that wait on hardware see it done on the second poll
  switch (procedure_number_) {
    case kAbort:
      return kStatusComplete | kCodeAborted;
    case kPhyReset:
      if (!waited) return kStatusInProgress;
      phy_reset_done_ = true;
      return kStatusComplete;
    case kPhyTxZcal:
      if (tx_zcal_done_) return kStatusComplete;
      if (!waited) return kStatusInProgress;
      tx_zcal_done_ = true;
      return kStatusComplete;
    case kPhyRxDccal:
      if (!waited) return kStatusInProgress;
      rx_dccal_done_ = true;
      return kStatusComplete;
    case kPhyRxTraining:
      if (phy_reset_done_ && rx_dccal_done_ && tx_zcal_done_) {
        if (!waited) return kStatusInProgress;
        link_state_.store(LinkState::kTrained, std::memory_order_release);
        return kStatusComplete;
      }
      if (procedure_polls_ < kTimeoutPolls) return kStatusInProgress;
      link_state_.store(LinkState::kUntrained, std::memory_order_release);
      return kStatusComplete | kCodePermanentFailure;
    case kResetNtl:
      set_flags(link_flags_ | kLinkFlagDlReset);
      return kStatusComplete;
    default:  // nop, TX_RXCAL enable/disable, pre-terminate, terminate, check_credits
      return kStatusComplete;
  }
}

void Npu2Bridge::procedure_reset() {
  phy_reset_done_ = false;
  rx_dccal_done_ = false;
  set_flags(link_flags_ & ~kLinkFlagDlReset);
  link_state_.store(LinkState::kUntrained, std::memory_order_release);
}

void Npu2Bridge::reset(ResetKind /*kind*/) {
  LinkWatch watch(*this);
  MutexLock lock(mutex_);
  procedure_reset();
}

void Npu2Bridge::gpu_reset() {
  LinkWatch watch(*this);
  MutexLock lock(mutex_);
  procedure_reset();
}

void Npu2Bridge::set_pci_linked(bool linked) {
  MutexLock lock(mutex_);
  set_flags(linked ? (link_flags_ | kLinkFlagPciLinked) : (link_flags_ & ~kLinkFlagPciLinked));
}

PciDeviceModel::Bar Npu2Bridge::bar(int index) const {
  if (index == 0) return {.size = kNtlBarSize, .mem64 = true, .prefetchable = false, .mmappable = true};
  if (index == 2) return {.size = kGenidBarSize, .mem64 = true, .prefetchable = false, .mmappable = true};
  return {};
}

Result<void> Npu2Bridge::bar_read(int index, uint64_t offset, std::span<std::byte> out) {
  if (index == 0) return ntl_memfd_.read(offset, out.data(), out.size());
  if (index == 2) return genid_memfd_.read(offset, out.data(), out.size());
  return fail(kEINVAL);
}

Result<void> Npu2Bridge::bar_write(int index, uint64_t offset, std::span<const std::byte> in) {
  if (index == 0) return ntl_memfd_.write(offset, in.data(), in.size());
  if (index == 2) return genid_memfd_.write(offset, in.data(), in.size());
  return fail(kEINVAL);
}

int Npu2Bridge::bar_fd(int index) const {
  if (index == 0) return ntl_memfd_.fd();
  if (index == 2) return genid_memfd_.fd();
  return -1;
}

}  // namespace nv2pt::platform
