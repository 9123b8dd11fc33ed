#include "platform/gv100.h"

#include <cstring>

#include "base/checked.h"

// Sources of the values below:
//  [LSPCI] a public `lspci -v` of a V100 SXM2 16GB (AWS p3, GitHub notes "CUDAの環境設定"):
//          "Subsystem: NVIDIA Corporation Device 1212", "Memory (32-bit, non-prefetchable) [size=16M]",
//          "(64-bit, prefetchable) [size=16G]", "(64-bit, prefetchable) [size=32M]"; no expansion ROM listed.
//          The same three BARs appear in the seed and on every GV100 listing found.
//  [NVGEN] placeholder, no public V100 capability dump found: the capability layout NVIDIA GPUs of the
//          Maxwell..Volta generations publish in `lspci -vv` dumps (e.g. GM107 in ghostbsd/ghostbsd-build#54:
//          PM@0x60, MSI@0x68, Express v2 endpoint@0x78, vendor-specific@0xb4, VC@0x100, power budgeting@0x128,
//          vendor@0x600); AER at 0x420 as on the Tesla boards. Pre-Turing GPUs report "FLReset-".
//  [NOUV]  Linux nouveau, drivers/gpu/drm/nouveau/nvkm/engine/device/base.c: the chipset is BOOT_0 bits 28:20
//          and case 0x140 is nv140_chipset ("GV100"); the revision is BOOT_0 bits 7:0.
// The vendor/device/revision/class come from the topology (the default one says 10de:1db1 rev a1, 0x030200).

namespace nv2pt::platform {

namespace {

constexpr uint32_t kCommand = 0x04;
constexpr uint32_t kRomBar = 0x30;

}  // namespace

Result<std::unique_ptr<Gv100>> Gv100::create(PciAddress address, Identity identity) {
  std::unique_ptr<Gv100> gpu(new Gv100(address, identity));
  const std::string base = "nv2pt-gv100-" + address.to_string() + "-bar";
  gpu->bar_memfd_[0] = NV2PT_TRY(SparseMemfd::create(base + "0", kBar0Size));
  gpu->bar_memfd_[1] = NV2PT_TRY(SparseMemfd::create(base + "1", kBar1Size));
  gpu->bar_memfd_[3] = NV2PT_TRY(SparseMemfd::create(base + "3", kBar3Size));
  // BAR0 is a register file in its memfd so that mmap and pread see the same registers.
  const uint32_t boot0 = kBoot0Value;
  NV2PT_TRY(gpu->bar_memfd_[0].write(kNvPmcBoot0, &boot0, sizeof boot0));
  return gpu;
}

Result<std::unique_ptr<Gv100>> Gv100::create(PciAddress address) { return create(address, Identity{}); }

Gv100::Gv100(PciAddress address, Identity identity) : PciDeviceModel(address), identity_(identity) {
  std::array<Bar, kPciBarCount> bars{};
  bars[0] = {.size = kBar0Size, .mem64 = false, .prefetchable = false, .mmappable = true};  // [LSPCI]
  bars[1] = {.size = kBar1Size, .mem64 = true, .prefetchable = true, .mmappable = true};    // [LSPCI]
  bars[3] = {.size = kBar3Size, .mem64 = true, .prefetchable = true, .mmappable = true};    // [LSPCI]
  MutexLock lock(mutex_);
  bars_ = BarRegisters(bars);
  init_config();
}

void Gv100::init_config() {
  config_ = ConfigSpace();
  config_.init(0x00, 2, identity_.vendor_id);
  config_.init(0x02, 2, identity_.device_id);
  // Command: MEM, MASTER, PERR, SERR and INTx-disable are writable (no I/O BAR, so I/O space stays 0).
  // Status: the error bits are RW1C.
  config_.init(kCommand, 2, 0x0000, 0x0546);
  config_.init(0x06, 2, 0x0000, 0, 0xf900);
  config_.init(0x08, 1, identity_.revision);
  config_.init(0x09, 1, identity_.class_code & 0xff);
  config_.init(0x0a, 2, static_cast<uint16_t>(identity_.class_code >> 8));
  config_.init(0x0c, 1, 0x00, 0xff);  // cache line size, writable
  config_.init(0x0d, 1, 0x00);        // latency timer (0 on PCIe)
  config_.init(0x0e, 1, 0x00);        // header type 0, single function (the SXM2 board has no audio function)
  config_.init(0x2c, 2, identity_.subsystem_vendor_id);  // [LSPCI]
  config_.init(0x2e, 2, identity_.subsystem_id);         // [LSPCI]
  config_.init(kRomBar, 4, 0);                           // no expansion ROM: sizing reads back 0 [LSPCI]
  config_.init(0x3c, 1, 0x00, 0xff);                     // interrupt line, writable
  config_.init(0x3d, 1, 0x01);                           // interrupt pin A

  // Power management v3: no D1/D2, no PME; PMCSR power state writable, No_Soft_Reset set. [NVGEN]
  config_.add_capability(kPmCap, 0x01);
  config_.init(kPmCap + 2, 2, 0x0003);
  config_.init(kPmCap + 4, 2, 0x0008, 0x0003);
  // MSI: one vector, 64-bit address, no per-vector masking. [NVGEN]
  config_.add_capability(kMsiCap, 0x05);
  config_.init(kMsiCap + 2, 2, 0x0080, 0x0071);  // enable + multiple message enable writable
  config_.init(kMsiCap + 4, 4, 0, 0xfffffffc);   // address low
  config_.init(kMsiCap + 8, 4, 0, 0xffffffff);   // address high
  config_.init(kMsiCap + 12, 2, 0, 0xffff);      // data
  // PCI Express v2 endpoint. [NVGEN]
  config_.add_capability(kExpCap, 0x10);
  config_.init(kExpCap + 2, 2, 0x0002);  // version 2, device/port type 0 = PCI Express Endpoint
  // Device capabilities: max payload 256 B, extended tags, role-based error reporting; no FLR (bit 28 clear).
  config_.init(kExpCap + 4, 4, 0x00008021);
  // Device control: relaxed ordering, extended tags, no-snoop, MPS 128 B, MRRS 512 B; bit 15 reserved without FLR.
  config_.init(kExpCap + 8, 2, 0x2910, 0x7fff);
  config_.init(kExpCap + 10, 2, 0x0000, 0, 0x000f);  // device status: error bits RW1C
  // Link: 8 GT/s x16, ASPM L0s/L1 supported; trained at 8 GT/s x16 with slot clock.
  config_.init(kExpCap + 12, 4, 0x00000d03);  // speed 3, width 16 (0x100), ASPM 0xc00
  config_.init(kExpCap + 16, 2, 0x0000, 0x0fc3);
  config_.init(kExpCap + 18, 2, 0x1103);  // speed 3, width 16, slot clock
  // Device capabilities 2 (completion timeout ranges A-D, disable supported) and control 2.
  config_.init(kExpCap + 36, 4, 0x0000001f);
  config_.init(kExpCap + 40, 2, 0x0000, 0x041f);
  config_.init(kExpCap + 44, 4, 0x0000000e);         // link capabilities 2: 2.5, 5 and 8 GT/s
  config_.init(kExpCap + 48, 2, 0x0003, 0xffff);     // link control 2: target 8 GT/s
  // Vendor-specific capability, 0x14 bytes, contents not public. [NVGEN]
  config_.add_capability(kVendorCap, 0x09);
  config_.init(kVendorCap + 2, 1, 0x14);

  // Extended capabilities: headers only, bodies zero (placeholders). [NVGEN]
  config_.add_extended_capability(kExtVirtualChannel, 0x0002, 1);
  config_.add_extended_capability(kExtPowerBudgeting, 0x0004, 1);
  config_.add_extended_capability(kExtAer, 0x0001, 2);
  config_.add_extended_capability(kExtVendor, 0x000b, 1);
}

uint32_t Gv100::config_read(uint32_t offset, unsigned size) {
  MutexLock lock(mutex_);
  if (BarRegisters::covers(offset)) return bars_.read(offset, size);
  return config_.read(offset, size);
}

void Gv100::config_write(uint32_t offset, unsigned size, uint32_t value) {
  MutexLock lock(mutex_);
  if (BarRegisters::covers(offset)) {
    bars_.write(offset, size, value);
    return;
  }
  config_.write(offset, size, value);
}

PciDeviceModel::Bar Gv100::bar(int index) const {
  if (index < 0 || index >= kPciBarCount) return {};
  MutexLock lock(mutex_);  // a config write to the BAR registers changes it
  return bars_.bar(index);
}

Result<void> Gv100::bar_read(int index, uint64_t offset, std::span<std::byte> out) {
  if (index < 0 || index >= kPciBarCount || !bar_memfd_[index].valid()) return fail(kEINVAL);
  return bar_memfd_[index].read(offset, out.data(), out.size());
}

Result<void> Gv100::bar_write(int index, uint64_t offset, std::span<const std::byte> in) {
  if (index < 0 || index >= kPciBarCount || !bar_memfd_[index].valid()) return fail(kEINVAL);
  const auto end = checked_add(offset, in.size());
  if (!end || *end > bar_memfd_[index].size()) return fail(kEINVAL);
  if (index == 0 && offset < kNvPmcBoot0 + 4) {
    // NV_PMC_BOOT_0 is read-only: drop the bytes that land on it.
    const uint64_t skip = std::min<uint64_t>(kNvPmcBoot0 + 4 - offset, in.size());
    if (skip == in.size()) return {};
    return bar_memfd_[0].write(offset + skip, in.data() + skip, in.size() - skip);
  }
  return bar_memfd_[index].write(offset, in.data(), in.size());
}

int Gv100::bar_fd(int index) const {
  if (index < 0 || index >= kPciBarCount) return -1;
  return bar_memfd_[index].fd();
}

void Gv100::reset(ResetKind /*kind*/) {
  std::function<void()> listener;
  {
    MutexLock lock(mutex_);
    init_config();
    bars_.clear();
    ++resets_;
    listener = on_reset_;
  }
  if (listener) listener();
}

void Gv100::set_reset_listener(std::function<void()> listener) {
  MutexLock lock(mutex_);
  on_reset_ = std::move(listener);
}

uint64_t Gv100::reset_count() const {
  MutexLock lock(mutex_);
  return resets_;
}

}  // namespace nv2pt::platform
