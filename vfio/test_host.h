// Test fixture pieces for the vfio layer: an address space with a chosen memlock policy, groups built from PEs the
// way the real host builds them, and 64 KiB-aligned client memory.
#pragma once

#include <sys/mman.h>

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <set>
#include <utility>
#include <vector>

#include "mm/address_space.h"
#include "vfio/container.h"
#include "vfio/fd_resolver.h"
#include "vfio/invariant_checker.h"
#include "vfio/test_groups.h"

namespace nv2pt::vfio::testing {

inline constexpr uint64_t KiB = 1ull << 10, MiB = 1ull << 20, GiB = 1ull << 30;

// Anonymous client memory aligned to 64 KiB (or `align`), unmapped on destruction.
class ClientMemory {
 public:
  explicit ClientMemory(uint64_t size, int prot = PROT_READ | PROT_WRITE, uint64_t align = 64 * KiB)
      : size_(size) {
    raw_size_ = size + align;
    raw_ = mmap(nullptr, raw_size_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    EXPECT_NE(raw_, MAP_FAILED);
    base_ = (reinterpret_cast<uint64_t>(raw_) + align - 1) & ~(align - 1);
    if (prot != PROT_NONE) {
      EXPECT_EQ(mprotect(reinterpret_cast<void*>(base_), size, prot), 0);
    }
  }
  ~ClientMemory() { munmap(raw_, raw_size_); }
  ClientMemory(const ClientMemory&) = delete;
  ClientMemory& operator=(const ClientMemory&) = delete;
  uint64_t ua() const { return base_; }
  uint64_t size() const { return size_; }
  // Punches a hole (unmaps a piece) to provoke EFAULT.
  void unmap(uint64_t offset, uint64_t len) { munmap(reinterpret_cast<void*>(base_ + offset), len); }

 private:
  void* raw_;
  uint64_t raw_size_;
  uint64_t base_;
  uint64_t size_;
};

inline mm::AddressSpaceOptions process_options(uint64_t id, uint64_t memlock_bytes = 64 * GiB, bool cap = false) {
  mm::AddressSpaceOptions o;
  o.id = id;
  o.memlock = mm::MemlockPolicy::fixed(memlock_bytes, cap);
  return o;
}

// A file table for tests: containers and groups at the fds a test chooses, other open fds that are no VFIO object,
// and device fds handed out from 100 on.
class TestFds final : public FdResolver {
 public:
  static constexpr int kFirstDeviceFd = 100;
  std::map<int, std::shared_ptr<Container>> containers;
  std::map<int, Group*> groups;
  std::set<int> others;
  std::vector<std::pair<Group*, PciDevice*>> devices;  // fd - kFirstDeviceFd

  Result<std::shared_ptr<Container>> container(int fd) const override {
    if (auto it = containers.find(fd); it != containers.end()) return it->second;
    return fail(open(fd) ? kEINVAL : kEBADF);
  }
  Result<Group*> group(int fd) const override {
    if (auto it = groups.find(fd); it != groups.end()) return it->second;
    return fail(open(fd) ? kEINVAL : kEBADF);
  }
  Result<int> install_device(Group& group, PciDevice& device) override {
    devices.emplace_back(&group, &device);
    return kFirstDeviceFd + static_cast<int>(devices.size()) - 1;
  }

 private:
  bool open(int fd) const {
    return containers.contains(fd) || groups.contains(fd) || others.contains(fd) ||
           (fd >= kFirstDeviceFd && fd < kFirstDeviceFd + static_cast<int>(devices.size()));
  }
};

}  // namespace nv2pt::vfio::testing
