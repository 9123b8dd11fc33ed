// The capability chain of a VFIO info reply (vfio_info_cap_add / vfio_info_cap_shift): capabilities are appended
// 8-byte aligned, each header's `next` is the offset of the following one, and the whole chain is placed right
// after the fixed struct, so every `next` is shifted by the struct's size before copying out.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "vfio/uapi.h"

namespace nv2pt::vfio {

class CapabilityChain {
 public:
  // Appends a capability (the whole struct, header first); returns a pointer to its copy in the chain.
  template <class Cap>
  Cap* add(const Cap& cap) {
    const size_t offset = (bytes_.size() + 7) & ~size_t{7};
    bytes_.resize(offset + ((sizeof(Cap) + 7) & ~size_t{7}), std::byte{0});
    std::memcpy(bytes_.data() + offset, &cap, sizeof(Cap));
    if (last_ != kNone) header_at(last_)->next = static_cast<uint32_t>(offset);
    last_ = offset;
    header_at(offset)->next = 0;
    return reinterpret_cast<Cap*>(bytes_.data() + offset);
  }

  size_t size() const { return bytes_.size(); }
  bool contains(uint16_t id) const {
    for (size_t at = 0; !bytes_.empty();) {
      vfio_info_cap_header h;
      std::memcpy(&h, bytes_.data() + at, sizeof(h));
      if (h.id == id) return true;
      if (!h.next) break;
      at = h.next;
    }
    return false;
  }
  bool empty() const { return bytes_.empty(); }

  // The chain as it goes out after a struct of `struct_size` bytes: every non-zero `next` shifted by it.
  std::vector<std::byte> placed_after(size_t struct_size) const {
    std::vector<std::byte> out = bytes_;
    for (size_t at = 0; !out.empty();) {
      auto* h = reinterpret_cast<vfio_info_cap_header*>(out.data() + at);
      const uint32_t next = h->next;
      if (next) h->next = static_cast<uint32_t>(next + struct_size);
      if (!next) break;
      at = next;
    }
    return out;
  }

 private:
  static constexpr size_t kNone = ~size_t{0};
  vfio_info_cap_header* header_at(size_t offset) {
    return reinterpret_cast<vfio_info_cap_header*>(bytes_.data() + offset);
  }
  std::vector<std::byte> bytes_;
  size_t last_ = kNone;
};

}  // namespace nv2pt::vfio
