#include "platform/config_space.h"

namespace nv2pt::platform {

void ConfigSpace::init(uint32_t offset, unsigned size, uint32_t value, uint32_t writable, uint32_t w1c) {
  if (!in_range(offset, size)) return;
  for (unsigned i = 0; i < size; ++i) {
    value_[offset + i] = static_cast<uint8_t>(value >> (8 * i));
    writable_[offset + i] = static_cast<uint8_t>(writable >> (8 * i));
    w1c_[offset + i] = static_cast<uint8_t>(w1c >> (8 * i));
  }
}

uint32_t ConfigSpace::read(uint32_t offset, unsigned size) const {
  if (!in_range(offset, size) || size == 0 || size > 4) return 0xffffffffu;
  uint32_t v = 0;
  for (unsigned i = 0; i < size; ++i) v |= uint32_t{value_[offset + i]} << (8 * i);
  return v;
}

void ConfigSpace::write(uint32_t offset, unsigned size, uint32_t value) {
  if (!in_range(offset, size) || size > 4) return;
  for (unsigned i = 0; i < size; ++i) {
    const uint32_t o = offset + i;
    const auto b = static_cast<uint8_t>(value >> (8 * i));
    uint8_t v = static_cast<uint8_t>((value_[o] & ~writable_[o]) | (b & writable_[o]));
    v = static_cast<uint8_t>(v & ~(b & w1c_[o]));
    value_[o] = v;
  }
}

void ConfigSpace::set(uint32_t offset, unsigned size, uint32_t value) {
  if (!in_range(offset, size) || size > 4) return;
  for (unsigned i = 0; i < size; ++i) value_[offset + i] = static_cast<uint8_t>(value >> (8 * i));
}

void ConfigSpace::add_capability(uint32_t offset, uint8_t id) {
  set(last_cap_next_, 1, offset);
  set(offset, 1, id);
  set(offset + 1, 1, 0);
  last_cap_next_ = offset + 1;
  // The Capabilities List bit of the status register.
  set(0x06, 1, read(0x06, 1) | 0x10);
}

void ConfigSpace::add_extended_capability(uint32_t offset, uint16_t id, uint8_t version) {
  if (last_ext_cap_ != 0) {
    const uint32_t prev = read(last_ext_cap_, 4);
    set(last_ext_cap_, 4, (prev & 0x000fffffu) | (offset << 20));
  }
  set(offset, 4, uint32_t{id} | uint32_t{version & 0xfu} << 16);
  last_ext_cap_ = offset;
}

}  // namespace nv2pt::platform
