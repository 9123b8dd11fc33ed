// The sPAPR TCE container under concurrent calls: UNREGISTER, TCE_REMOVE and MAP racing each other, maps sharing a
// missing level, and every call from many threads at once (the TSan build runs these too).
#include "vfio/spapr_tce_iommu.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "vfio/spapr_tce_test_fixture.h"

namespace nv2pt::vfio {
namespace {

using namespace testing;

TEST_F(V2, UnregisterRacingMapNeverLeavesATceIntoAFreedRegion) {
  ClientMemory m(1 * MiB);
  qemu_windows();
  for (int round = 0; round < 200; ++round) {
    ASSERT_TRUE(reg(m.ua(), 1 * MiB));
    std::atomic<bool> mapped{false};
    std::thread mapper([&] { mapped = map(kWindow1, m.ua(), 1 * MiB).has_value(); });
    auto unregistered = unreg(m.ua(), 1 * MiB);
    mapper.join();
    if (unregistered) {
      EXPECT_FALSE(mapped);  // unregister won: the map found no region
    } else {
      EXPECT_EQ(unregistered.error(), kEBUSY);  // map won: unregister refused
      ASSERT_TRUE(unmap(kWindow1, 1 * MiB));
      ASSERT_TRUE(unreg(m.ua(), 1 * MiB));
    }
    check();
  }
}

TEST_F(V2, ConcurrentMapsUnderOneMissingLevelAllocateOneBlock) {
  ClientMemory m(4 * MiB);
  ASSERT_TRUE(reg(m.ua(), 4 * MiB));
  qemu_windows();
  const uint64_t before = window(1).allocated_blocks();
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] { EXPECT_TRUE(map(kWindow1 + i * MiB, m.ua() + i * MiB, 1 * MiB)); });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(window(1).allocated_blocks(), before + 2);  // one leaf for the table, one for the cache
}

TEST_F(V2, RemoveRacingMapIsSerialised) {
  ClientMemory m(1 * MiB);
  ASSERT_TRUE(reg(m.ua(), 1 * MiB));
  for (int round = 0; round < 100; ++round) {
    ASSERT_TRUE(remove(0) || true);
    auto start = create(16, 1ull << 40, 2);
    ASSERT_TRUE(start);
    std::thread mapper([&] {
      auto r = map(*start, m.ua(), 1 * MiB);
      if (!r) {
        EXPECT_EQ(r.error(), kENXIO);
      }
    });
    EXPECT_TRUE(remove(*start));
    mapper.join();
    EXPECT_EQ(iommu().registrations().front()->mapped(), 1u);
    check();
  }
}

// Every container call from several threads at once: nothing crashes, every call ends with a valid errno, and the
// invariants hold afterwards (the TSan build runs this too).
TEST(SpaprTce, MixedCallsFromManyThreadsKeepTheInvariants) {
  mm::AddressSpace as(process_options(1));
  NvlinkGroup g(4);
  Container c;
  ASSERT_TRUE(c.attach_group(g.group));
  ASSERT_TRUE(c.set_iommu(VFIO_SPAPR_TCE_v2_IOMMU));
  SpaprTceIommu& iommu = *c.iommu();
  ClientMemory a(4 * MiB), b(4 * MiB);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> calls{0};
  auto expect_errno = [](const Result<void>& r, std::initializer_list<Errno> allowed) {
    if (r) return;
    EXPECT_TRUE(std::find(allowed.begin(), allowed.end(), r.error()) != allowed.end()) << errno_name(r.error());
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      uint32_t seed = 0x9e3779b9u * (t + 1);
      while (!stop) {
        seed = seed * 1664525u + 1013904223u;
        const ClientMemory& m = (seed >> 8) & 1 ? a : b;
        const uint64_t iova = (seed >> 16 & 1 ? 1ull << 59 : 0) + ((seed >> 20) & 3) * MiB;
        switch ((seed >> 24) % 6) {
          case 0: {
            vfio_iommu_spapr_register_memory r{sizeof(r), 0, m.ua(), m.size()};
            expect_errno(iommu.register_memory(as, r), {kEBUSY});
            break;
          }
          case 1: {
            vfio_iommu_spapr_register_memory r{sizeof(r), 0, m.ua(), m.size()};
            expect_errno(iommu.unregister_memory(as, r), {kENOENT, kEBUSY, kEPERM});
            break;
          }
          case 2: {
            vfio_iommu_type1_dma_map map{sizeof(map), 3, m.ua(), iova, 1 * MiB};
            expect_errno(iommu.map_dma(as, map), {kEPERM, kENXIO, kEINVAL});
            break;
          }
          case 3: {
            vfio_iommu_type1_dma_unmap unmap{sizeof(unmap), 0, iova, 1 * MiB};
            expect_errno(iommu.unmap_dma(as, unmap), {kEPERM, kENXIO});
            break;
          }
          case 4: {
            vfio_iommu_spapr_tce_create cr{sizeof(cr), 0, 16, 0, 1ull << 30, 2, 0, 0};
            expect_errno(iommu.create_window(as, cr), {kENOSPC});
            break;
          }
          case 5: {
            vfio_iommu_spapr_tce_remove rm{sizeof(rm), 0, seed >> 7 & 1 ? 1ull << 59 : 0};
            expect_errno(iommu.remove_window(as, rm), {kEINVAL});
            break;
          }
        }
        ++calls;
      }
    });
  }
  while (calls < 20000) std::this_thread::yield();
  stop = true;
  for (auto& th : threads) th.join();
  InvariantReport r = check_invariants(as, {&iommu});
  EXPECT_TRUE(r.ok()) << r.to_string();
  c.detach_group(g.group);
  EXPECT_EQ(as.locked_memory().locked_pages(), 0u);
  EXPECT_TRUE(as.registry().empty());
}

}  // namespace
}  // namespace nv2pt::vfio
