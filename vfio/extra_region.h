// A device-specific ("extra") vfio-pci region, index 9 and up (vfio_pci_register_dev_region): a type/subtype, a
// size and flags, capabilities of its own after the TYPE one, and its read/write, mmap and release operations.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "base/errno.h"
#include "mm/address_space.h"
#include "vfio/capability_chain.h"

namespace nv2pt::vfio {

class ExtraRegion {
 public:
  virtual ~ExtraRegion() = default;

  virtual std::string name() const = 0;
  virtual uint32_t type() const = 0;
  virtual uint32_t subtype() const = 0;
  virtual uint64_t size() const = 0;
  virtual uint32_t flags() const = 0;
  // Capabilities after the TYPE capability the core adds.
  virtual void add_capabilities(CapabilityChain& chain) const = 0;
  // pos is inside the region (offset & (2^40 - 1)); count already known to be non-zero.
  virtual Result<size_t> read(std::span<std::byte> out, uint64_t pos) = 0;
  virtual Result<size_t> write(std::span<const std::byte> in, uint64_t pos) = 0;
  // The region's mmap op: the VMA is known MAP_SHARED. `pgoff` is the page offset inside the region.
  virtual Result<void*> mmap(mm::AddressSpace& caller, void* addr, size_t length, int prot, uint64_t pgoff) = 0;
  // The user unmapped a mapping this region made.
  virtual void munmap(void* addr, size_t length) = 0;
  // Device disable (last close).
  virtual void release() = 0;
};

}  // namespace nv2pt::vfio
