#include "vfio/pci_config.h"

#include <algorithm>
#include <cstring>

namespace nv2pt::vfio {
namespace {

constexpr uint32_t kCommand = 0x04, kBar0 = 0x10, kRom = 0x30, kCapPtr = 0x34, kIntLine = 0x3c, kIntPin = 0x3d;
constexpr uint8_t kCapMsi = 0x05, kCapPcie = 0x10, kCapMsix = 0x11;
constexpr uint32_t kPcieDevCtl = 0x08;
constexpr uint16_t kDevCtlFlr = 0x8000;

}  // namespace

PciConfig::PciConfig(platform::PciDeviceModel& model) : model_(model) {
  // Find the capabilities vfio-pci virtualises (a bounded walk: a looping list cannot hang us).
  uint8_t at = model_.config_read(kCapPtr, 1) & 0xfc;
  for (int guard = 0; at >= 0x40 && guard < 48; ++guard) {
    const uint8_t id = model_.config_read(at, 1);
    if (id == kCapMsi) {
      msi_cap_ = at;
      const uint16_t flags = model_.config_read(at + 2, 2);
      msi_len_ = 10 + ((flags & 0x80) ? 4 : 0) + ((flags & 0x100) ? 10 : 0);
    } else if (id == kCapMsix) {
      msix_cap_ = at;
    } else if (id == kCapPcie) {
      pcie_cap_ = at;
    }
    at = model_.config_read(at + 1, 1) & 0xfc;
  }
  reset_virtual_state();
}

void PciConfig::reset_virtual_state() {
  command_ = model_.config_read(kCommand, 2);
  for (int i = 0; i < 6; ++i) bars_[i] = model_.config_read(kBar0 + 4 * i, 4);
  rom_ = 0;
  interrupt_line_ = model_.config_read(kIntLine, 1);
  virtual_caps_.fill(0);
  for (uint32_t cap : {uint32_t{msi_cap_}, uint32_t{msix_cap_}}) {
    if (!cap) continue;
    const uint32_t len = cap == msi_cap_ ? msi_len_ : msix_len_;
    for (uint32_t i = 2; i < len && cap + i < 256; ++i) virtual_caps_[cap + i] = model_.config_read(cap + i, 1);
  }
}

void PciConfig::after_reset() {
  command_ = 0;
  bars_.fill(0);
  for (int i = 0; i < 6; ++i) {
    const platform::PciDeviceModel::Bar bar = model_.bar(i);
    if (bar.size) bars_[i] = (bar.mem64 ? 0x4 : 0) | (bar.prefetchable ? 0x8 : 0);
  }
  rom_ = 0;
}

uint8_t PciConfig::interrupt_pin() const { return model_.config_read(kIntPin, 1); }

uint32_t PciConfig::msi_vectors() const {
  if (!msi_cap_) return 0;
  const uint16_t flags = model_.config_read(msi_cap_ + 2, 2);
  return 1u << ((flags >> 1) & 0x7);
}

uint32_t PciConfig::msix_vectors() const {
  if (!msix_cap_) return 0;
  return (model_.config_read(msix_cap_ + 2, 2) & 0x7ff) + 1;
}

bool PciConfig::is_virtual(uint32_t offset) const {
  auto inside = [&](uint8_t cap, uint32_t len) { return cap && offset >= cap + 2u && offset < cap + len; };
  return inside(msi_cap_, msi_len_) || inside(msix_cap_, msix_len_);
}

uint32_t PciConfig::read_dword(uint32_t offset) {
  if (offset >= kBar0 && offset < kBar0 + 24) {
    const int i = (offset - kBar0) / 4;
    // An upper half of a 64-bit BAR or an unimplemented BAR: whatever was written, masked by nothing / zero.
    return bars_[i];
  }
  if (offset == kRom) return model_.rom_size() ? rom_ : 0;
  uint32_t value = model_.config_read(offset, 4);
  if (offset == kCommand) value = (value & 0xffff0000u) | command_;
  if (offset == kIntLine) value = (value & ~0xffu) | interrupt_line_;
  for (uint32_t b = 0; b < 4; ++b) {
    if (offset + b < 256 && is_virtual(offset + b)) {
      value = (value & ~(0xffu << (8 * b))) | (uint32_t{virtual_caps_[offset + b]} << (8 * b));
    }
  }
  return value;
}

Result<size_t> PciConfig::read(std::span<std::byte> out, uint64_t pos) {
  if (pos >= size()) return fail(kEINVAL);
  const size_t count = std::min<uint64_t>(out.size(), size() - pos);
  for (size_t done = 0; done < count;) {
    const uint32_t at = static_cast<uint32_t>(pos + done);
    const uint32_t dword = read_dword(at & ~3u);
    const size_t take = std::min<size_t>(4 - (at & 3), count - done);
    for (size_t b = 0; b < take; ++b) out[done + b] = std::byte((dword >> (8 * ((at & 3) + b))) & 0xff);
    done += take;
  }
  return count;
}

void PciConfig::write_piece(uint32_t offset, unsigned size, uint32_t value) {
  const uint32_t dword_at = offset & ~3u;
  const unsigned shift = 8 * (offset & 3);
  const uint32_t mask = (size == 4 ? 0xffffffffu : ((1u << (8 * size)) - 1)) << shift;
  if (dword_at >= kBar0 && dword_at < kBar0 + 24) {
    const int i = (dword_at - kBar0) / 4;
    uint32_t merged = (bars_[i] & ~mask) | ((value << shift) & mask);
    // The size mask of the BAR (or of the upper half of a 64-bit one) and its read-only type bits.
    const platform::PciDeviceModel::Bar bar = model_.bar(i);
    const platform::PciDeviceModel::Bar lower = i > 0 ? model_.bar(i - 1) : platform::PciDeviceModel::Bar{};
    if (bar.size) {
      const uint32_t type = (bar.mem64 ? 0x4 : 0) | (bar.prefetchable ? 0x8 : 0);
      merged = (merged & ~static_cast<uint32_t>(bar.size - 1) & ~0xfu) | type;
    } else if (i > 0 && lower.size && lower.mem64) {
      merged &= ~static_cast<uint32_t>((lower.size - 1) >> 32);
    } else {
      merged = 0;
    }
    bars_[i] = merged;
    return;
  }
  if (dword_at == kRom) {
    const uint64_t rom = model_.rom_size();
    const uint32_t merged = (rom_ & ~mask) | ((value << shift) & mask);
    rom_ = rom ? (merged & (~static_cast<uint32_t>(rom - 1) | 0x1)) : 0;
    return;
  }
  if (dword_at == kCommand && shift < 16) {
    const uint16_t cmd_mask = static_cast<uint16_t>(mask);
    command_ = static_cast<uint16_t>((command_ & ~cmd_mask) | ((value << shift) & cmd_mask));
  }
  if (dword_at == kIntLine && (mask & 0xff)) {
    interrupt_line_ = static_cast<uint8_t>((value << shift) & 0xff);
    if (size == 1) return;
  }
  if (offset < 256 && is_virtual(offset)) {
    for (unsigned b = 0; b < size; ++b) virtual_caps_[offset + b] = static_cast<uint8_t>(value >> (8 * b));
    return;
  }
  // An FLR requested through PCIe Device Control resets the function instead of reaching the register.
  if (pcie_cap_ && dword_at == ((pcie_cap_ + kPcieDevCtl) & ~3u)) {
    const uint32_t devctl = ((value << shift) & mask) >> (8 * ((pcie_cap_ + kPcieDevCtl) & 3));
    if ((devctl & kDevCtlFlr) && model_.has_flr()) {
      model_.reset(platform::PciDeviceModel::ResetKind::kFunctionLevel);
      after_reset();
      return;
    }
  }
  model_.config_write(offset, size, value);
}

Result<size_t> PciConfig::write(std::span<const std::byte> in, uint64_t pos) {
  if (pos >= size()) return fail(kEINVAL);
  const size_t count = std::min<uint64_t>(in.size(), size() - pos);
  for (size_t done = 0; done < count;) {
    const uint32_t at = static_cast<uint32_t>(pos + done);
    // Naturally aligned pieces of 4, 2 or 1 bytes, as the hardware takes them.
    unsigned piece = 4;
    while (piece > 1 && ((at & (piece - 1)) || piece > count - done)) piece /= 2;
    uint32_t value = 0;
    for (unsigned b = 0; b < piece; ++b) value |= std::to_integer<uint32_t>(in[done + b]) << (8 * b);
    write_piece(at, piece, value);
    done += piece;
  }
  return count;
}

}  // namespace nv2pt::vfio
