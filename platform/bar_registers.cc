#include "platform/bar_registers.h"

namespace nv2pt::platform {

namespace {

// Flag bits of a memory BAR's low register: bit 2 = 64-bit type, bit 3 = prefetchable.
uint32_t flags_of(const PciDeviceModel::Bar& bar) {
  return (bar.mem64 ? 0x4u : 0u) | (bar.prefetchable ? 0x8u : 0u);
}

}  // namespace

// Which BAR a register index is the upper half of, or -1.
static int upper_half_of(const std::array<PciDeviceModel::Bar, kPciBarCount>& bars, int index) {
  if (index > 0 && bars[static_cast<size_t>(index - 1)].mem64 && bars[static_cast<size_t>(index - 1)].size != 0)
    return index - 1;
  return -1;
}

uint32_t BarRegisters::reg_value(int index) const {
  if (const int lower = upper_half_of(bars_, index); lower >= 0) {
    const uint64_t mask = ~(bars_[static_cast<size_t>(lower)].size - 1);
    return regs_[static_cast<size_t>(index)] & static_cast<uint32_t>(mask >> 32);
  }
  const auto& bar = bars_[static_cast<size_t>(index)];
  if (bar.size == 0) return 0;
  const uint64_t mask = ~(bar.size - 1) & ~uint64_t{0xf};
  return (regs_[static_cast<size_t>(index)] & static_cast<uint32_t>(mask)) | flags_of(bar);
}

void BarRegisters::reg_store(int index, uint32_t value) { regs_[static_cast<size_t>(index)] = value; }

uint32_t BarRegisters::read(uint32_t offset, unsigned size) const {
  uint32_t v = 0;
  for (unsigned i = 0; i < size; ++i) {
    const uint32_t o = offset + i;
    if (!covers(o)) continue;
    const int index = static_cast<int>((o - kFirst) / 4);
    const uint32_t byte = (reg_value(index) >> (8 * ((o - kFirst) % 4))) & 0xff;
    v |= byte << (8 * i);
  }
  return v;
}

void BarRegisters::write(uint32_t offset, unsigned size, uint32_t value) {
  for (unsigned i = 0; i < size; ++i) {
    const uint32_t o = offset + i;
    if (!covers(o)) continue;
    const int index = static_cast<int>((o - kFirst) / 4);
    const unsigned shift = 8 * ((o - kFirst) % 4);
    uint32_t r = regs_[static_cast<size_t>(index)];
    r = (r & ~(0xffu << shift)) | (((value >> (8 * i)) & 0xff) << shift);
    reg_store(index, r);
  }
}

}  // namespace nv2pt::platform
