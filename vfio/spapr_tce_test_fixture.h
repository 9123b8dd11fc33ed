// The v2 container fixture the sPAPR TCE container tests share: group 4 (a GPU and its bridges, built by hand) in
// a v2 container, with one-line wrappers for the calls and the invariant checker run at the end of every test.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "vfio/spapr_tce_iommu.h"
#include "vfio/test_host.h"

namespace nv2pt::vfio::testing {

inline constexpr uint64_t kWindow1 = 1ull << 59;
inline constexpr uint64_t kGpuHpa = 0x400000000000ull;  // first GPU RAM window of the default topology

class V2 : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(container.attach_group(g4.group));
    ASSERT_TRUE(container.set_iommu(VFIO_SPAPR_TCE_v2_IOMMU));
  }
  void TearDown() override { check(); }

  void check(uint64_t extra = 0) {
    std::vector<const SpaprTceIommu*> all;
    if (container.iommu()) all.push_back(container.iommu());
    for (Container* c : others) if (c->iommu()) all.push_back(c->iommu());
    InvariantReport r = check_invariants(as, all, extra);
    EXPECT_TRUE(r.ok()) << r.to_string();
  }
  SpaprTceIommu& iommu() { return *container.iommu(); }
  uint64_t locked() const { return as.locked_memory().locked_pages(); }

  Result<void> reg(uint64_t ua, uint64_t size, mm::AddressSpace* caller = nullptr) {
    vfio_iommu_spapr_register_memory r{sizeof(r), 0, ua, size};
    return iommu().register_memory(caller ? *caller : as, r);
  }
  Result<void> unreg(uint64_t ua, uint64_t size) {
    vfio_iommu_spapr_register_memory r{sizeof(r), 0, ua, size};
    return iommu().unregister_memory(as, r);
  }
  Result<void> map(uint64_t iova, uint64_t ua, uint64_t size,
                   uint32_t flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE) {
    vfio_iommu_type1_dma_map m{sizeof(m), flags, ua, iova, size};
    return iommu().map_dma(as, m);
  }
  Result<void> unmap(uint64_t iova, uint64_t size) {
    vfio_iommu_type1_dma_unmap u{sizeof(u), 0, iova, size};
    return iommu().unmap_dma(as, u);
  }
  Result<uint64_t> create(unsigned shift, uint64_t size, unsigned levels) {
    vfio_iommu_spapr_tce_create c{sizeof(c), 0, shift, 0, size, levels, 0};
    NV2PT_TRY(iommu().create_window(as, c));
    return c.start_addr;
  }
  Result<void> remove(uint64_t start) {
    vfio_iommu_spapr_tce_remove r{sizeof(r), 0, start};
    return iommu().remove_window(as, r);
  }
  // What QEMU 7.2 sets up: the default window dropped, a 1 GiB 4K window at 0 (machine reset), then the 64-bit
  // window (the guest's DDW) at 2^59.
  void qemu_windows() {
    ASSERT_TRUE(remove(0));
    ASSERT_EQ(create(12, 1 * GiB, 2), 0u);
    ASSERT_EQ(create(16, 1ull << 46, 2), kWindow1);
  }
  // A GPU RAM mmap as the device layer makes it: a special (PFN) mapping registered as device memory.
  mm::RegionRef gpu_ram(const ClientMemory& m) {
    EXPECT_TRUE(as.pinner().add_special_mapping(m.ua(), m.size()));
    auto r = as.registry().add_device(m.ua(), m.size() >> 16, kGpuHpa);
    EXPECT_TRUE(r);
    return r ? *r : nullptr;
  }
  const iommu::TceTable& window(unsigned slot) {
    for (auto& w : iommu().windows()) if (w.slot == slot) return *w.table;
    ADD_FAILURE() << "no window " << slot;
    return *iommu().windows().front().table;
  }

  mm::AddressSpace as{process_options(1)};
  NvlinkGroup g4{4};
  std::vector<Container*> others;
  Container container;
};

}  // namespace nv2pt::vfio::testing
