// Pieces shared by the benchmarks: client memory, a v2 container over one NVLink compound group set up the way
// QEMU 7.2 sets it up (default window removed, one DDW window created), and percentiles. No gtest: benchmarks are
// not tests, and a failed setup is reported with SkipWithError.
#pragma once

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "iommu/pe.h"
#include "iommu/table_group.h"
#include "mm/address_space.h"
#include "vfio/container.h"
#include "vfio/group.h"
#include "vfio/test_groups.h"

namespace nv2pt::bench {

inline constexpr uint64_t KiB = 1ull << 10, MiB = 1ull << 20, GiB = 1ull << 30;

// Anonymous memory aligned to 64 KiB (the host page of the model), unmapped on destruction. Nothing is touched.
class ClientMemory {
 public:
  explicit ClientMemory(uint64_t size, int prot = PROT_READ | PROT_WRITE, uint64_t align = 64 * KiB)
      : size_(size), raw_size_(size + align) {
    raw_ = mmap(nullptr, raw_size_, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw_ == MAP_FAILED) raw_ = nullptr;
    base_ = (reinterpret_cast<uint64_t>(raw_) + align - 1) & ~(align - 1);
  }
  ~ClientMemory() {
    if (raw_) munmap(raw_, raw_size_);
  }
  ClientMemory(const ClientMemory&) = delete;
  ClientMemory& operator=(const ClientMemory&) = delete;
  bool ok() const { return raw_ != nullptr && size_ != 0; }
  uint64_t ua() const { return base_; }
  uint64_t size() const { return size_; }
  void* ptr() const { return reinterpret_cast<void*>(base_); }

 private:
  uint64_t size_;
  uint64_t raw_size_;
  void* raw_ = nullptr;
  uint64_t base_ = 0;
};

using vfio::testing::NvlinkGroup;

// A v2 container bound to its own address space (memlock fixed and large: the benchmarks measure work, not
// limits), with one DDW window at bus address 0.
class V2Container {
 public:
  V2Container() : as_(options()), group_(4) {}
  ~V2Container() {
    if (container_) (void)group_.group.unset_container();
  }

  static mm::AddressSpaceOptions options() {
    mm::AddressSpaceOptions o;
    o.id = 1;
    o.memlock = mm::MemlockPolicy::fixed(uint64_t{1} << 50, false);
    return o;
  }

  // SET_CONTAINER, SET_IOMMU(v2), REMOVE of the default window, CREATE(page_shift, window, levels) at 0.
  bool init(unsigned page_shift, uint64_t window_size, unsigned levels) {
    container_ = std::make_shared<vfio::Container>();
    if (!group_.group.set_container(container_)) return false;
    if (ioctl(VFIO_SET_IOMMU, VFIO_SPAPR_TCE_v2_IOMMU) != 0) return false;
    vfio_iommu_spapr_tce_remove remove{sizeof(remove), 0, 0};
    if (ioctl(VFIO_IOMMU_SPAPR_TCE_REMOVE, &remove) != 0) return false;
    vfio_iommu_spapr_tce_create create{sizeof(create), 0, page_shift, 0, window_size, levels, 0, 0};
    if (ioctl(VFIO_IOMMU_SPAPR_TCE_CREATE, &create) != 0) return false;
    return create.start_addr == 0;
  }

  // The container ioctl as the interposer calls it: 0 or -errno.
  long ioctl(unsigned long cmd, unsigned long arg) {
    auto r = container_->ioctl(as_, cmd, arg);
    return r ? *r : -r.error().value;
  }
  template <class T>
  long ioctl(unsigned long cmd, T* arg) {
    return ioctl(cmd, reinterpret_cast<unsigned long>(arg));
  }

  long register_memory(uint64_t ua, uint64_t size) {
    vfio_iommu_spapr_register_memory reg{sizeof(reg), 0, ua, size};
    return ioctl(VFIO_IOMMU_SPAPR_REGISTER_MEMORY, &reg);
  }
  long unregister_memory(uint64_t ua, uint64_t size) {
    vfio_iommu_spapr_register_memory reg{sizeof(reg), 0, ua, size};
    return ioctl(VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY, &reg);
  }
  long map(uint64_t ua, uint64_t iova, uint64_t size) {
    vfio_iommu_type1_dma_map m{sizeof(m), VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE, ua, iova, size};
    return ioctl(VFIO_IOMMU_MAP_DMA, &m);
  }
  long unmap(uint64_t iova, uint64_t size) {
    vfio_iommu_type1_dma_unmap u{sizeof(u), 0, iova, size};
    return ioctl(VFIO_IOMMU_UNMAP_DMA, &u);
  }

  mm::AddressSpace& as() { return as_; }
  vfio::SpaprTceIommu& iommu() { return *container_->iommu(); }
  const iommu::TceTable& table() { return *iommu().windows().front().table; }

 private:
  mm::AddressSpace as_;
  NvlinkGroup group_;
  std::shared_ptr<vfio::Container> container_;
};

// The p-th percentile (0..100) of samples (sorted in place), nearest rank.
inline double percentile(std::vector<double>& samples, double p) {
  if (samples.empty()) return 0;
  std::sort(samples.begin(), samples.end());
  const size_t rank = static_cast<size_t>(p / 100.0 * static_cast<double>(samples.size() - 1) + 0.5);
  return samples[std::min(rank, samples.size() - 1)];
}

}  // namespace nv2pt::bench
