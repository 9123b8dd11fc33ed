// Pre-registration at the mm layer (docs/kernel/registry.md): new, get, put and the mapped counts, and where the
// model departs from mm_iommu_do_alloc and mm_iommu_newdev (docs/kernel-differences.md).
#include "mm/registry.h"

#include <atomic>
#include <chrono>
#include <random>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "mm/address_space.h"
#include "mm/test_memory.h"

namespace nv2pt::mm {
namespace {

using testing::k1G;
using testing::k2M;
using testing::k64K;
using testing::TestMapping;

constexpr uint64_t kGpuHpa = uint64_t{0x0400} << 32;  // first GPU RAM window of the default machine

class RegistryTest : public ::testing::Test {
 protected:
  RegistryTest() { make(MemlockPolicy::fixed(UINT64_MAX, false)); }
  void make(MemlockPolicy policy) {
    shifts_ = std::make_shared<FixedPageShiftSource>();
    as_ = std::make_unique<AddressSpace>(AddressSpaceOptions{
        .id = 1000, .memlock = std::move(policy), .pinner = {.page_shifts = shifts_}});
  }
  Registry& reg() { return as_->registry(); }
  LockedMemory& locked() { return as_->locked_memory(); }
  PagePinner& pinner() { return as_->pinner(); }

  std::shared_ptr<FixedPageShiftSource> shifts_;
  std::unique_ptr<AddressSpace> as_;
};

TEST_F(RegistryTest, Register1GiBChargesItsPages) {
  TestMapping m(k1G);
  auto t0 = std::chrono::steady_clock::now();
  auto r = reg().add_regular(m.ua(), k1G / k64K);
  auto t1 = std::chrono::steady_clock::now();
  ASSERT_TRUE(r) << errno_name(r.error());
  std::printf("[ cost     ] REGISTER 1 GiB (cold, incl. fault-in): %.1f ms\n",
              std::chrono::duration<double, std::milli>(t1 - t0).count());
  EXPECT_EQ(locked().locked_pages(), 16384u);
  EXPECT_EQ((*r)->used(), 1u);
  EXPECT_EQ((*r)->mapped(), 1u);
  EXPECT_EQ((*r)->page_shift(), 16u);
  EXPECT_FALSE(reg().empty());
  EXPECT_EQ(pinner().pinned_pages(), 16384u);
  ASSERT_TRUE(reg().put(*r));
  EXPECT_EQ(locked().locked_pages(), 0u);
  EXPECT_EQ(pinner().pinned_pages(), 0u);
  EXPECT_TRUE(reg().empty());
}

TEST_F(RegistryTest, MisalignedOrWrappingRangesAreEinval) {
  TestMapping m(4 * k64K);
  EXPECT_EQ(reg().add_regular(m.ua() + 4096, 2).error(), kEINVAL);
  EXPECT_EQ(reg().add_regular(~uint64_t{0xFFFF}, 2).error(), kEINVAL);
  EXPECT_EQ(reg().add_regular(m.ua(), uint64_t{1} << 50).error(), kEINVAL);
  EXPECT_EQ(reg().add_device(~uint64_t{0xFFFF}, 2, kGpuHpa).error(), kEINVAL);
  EXPECT_EQ(reg().add_device(m.ua(), 2, ~uint64_t{0xFFFF}).error(), kEINVAL) << "physical range wraps";
  EXPECT_EQ(locked().locked_pages(), 0u);
  EXPECT_TRUE(reg().empty());
}

TEST_F(RegistryTest, ExactMatchIsSharedByGet) {
  TestMapping m(8 * k64K);
  auto first = reg().add_regular(m.ua(), 8);
  ASSERT_TRUE(first);
  auto second = reg().get(m.ua(), 8);  // a second container of the same process
  ASSERT_TRUE(second);
  EXPECT_EQ(*first, *second);
  EXPECT_EQ((*first)->used(), 2u);
  EXPECT_EQ(locked().locked_pages(), 8u) << "sharing charges nothing more";
  EXPECT_EQ(reg().get(m.ua(), 4).error(), kENOENT) << "same start, other size";
  EXPECT_EQ(reg().get(m.ua() + k64K, 7).error(), kENOENT);
  ASSERT_TRUE(reg().put(*first));  // one container unregisters: the region stays
  EXPECT_EQ(reg().size(), 1u);
  EXPECT_EQ(locked().locked_pages(), 8u);
  ASSERT_TRUE(reg().put(*second));
  EXPECT_TRUE(reg().empty());
  EXPECT_EQ(locked().locked_pages(), 0u);
}

TEST_F(RegistryTest, OverlapIsEinvalAndLeavesNoChargeOrPinBehind) {
  TestMapping m(16 * k64K);
  auto r = reg().add_regular(m.ua(), 8);
  ASSERT_TRUE(r);
  const uint64_t h3 = *pinner().ua_to_hpa(m.ua() + 3 * k64K);
  EXPECT_EQ(reg().add_regular(m.ua() + 4 * k64K, 8).error(), kEINVAL);  // tail overlap
  EXPECT_EQ(reg().add_regular(m.ua(), 16).error(), kEINVAL);             // superset
  EXPECT_EQ(reg().add_regular(m.ua() + k64K, 2).error(), kEINVAL);       // inside
  EXPECT_EQ(reg().add_device(m.ua() + 7 * k64K, 2, kGpuHpa).error(), kEINVAL);
  EXPECT_EQ(locked().locked_pages(), 8u);
  EXPECT_EQ(pinner().pinned_pages(), 8u);
  EXPECT_EQ(pinner().pin_count(m.ua() + 3 * k64K), 1u);
  EXPECT_EQ(*pinner().ua_to_hpa(m.ua() + 3 * k64K), h3);
  auto adjacent = reg().add_regular(m.ua() + 8 * k64K, 8);  // touching, not overlapping
  ASSERT_TRUE(adjacent);
  ASSERT_TRUE(reg().put(*r));
  ASSERT_TRUE(reg().put(*adjacent));
  EXPECT_EQ(locked().locked_pages(), 0u);
}

// A "GPU RAM mmap" as the vfio layer will declare it: a special (PFN) mapping plus a device region.
struct FakeGpuRam {
  FakeGpuRam(Registry& reg, PagePinner& pinner, uint64_t pages) : map(pages * k64K), pinner(pinner) {
    EXPECT_TRUE(pinner.add_special_mapping(map.ua(), map.len()));
    region = *reg.add_device(map.ua(), pages, kGpuHpa);
  }
  ~FakeGpuRam() { (void)pinner.remove_special_mapping(map.ua(), map.len()); }
  TestMapping map;
  PagePinner& pinner;
  RegionRef region;
};

TEST_F(RegistryTest, RangeStartingInsideGpuRamIsEfault) {
  FakeGpuRam gpu(reg(), pinner(), 32);
  // v5.2+ order: pinning comes first and refuses the PFN mapping, before the overlap check could say EINVAL.
  EXPECT_EQ(reg().add_regular(gpu.map.ua() + 4 * k64K, 8).error(), kEFAULT);
  EXPECT_EQ(locked().locked_pages(), 0u);
  EXPECT_EQ(pinner().pinned_pages(), 0u);
}

TEST_F(RegistryTest, NormalMemoryFollowedByAHoleIsEfaultNotACount) {
  TestMapping m(16 * k64K);
  m.punch(10 * k64K, 2 * k64K);
  auto r = reg().add_regular(m.ua(), 16);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), kEFAULT);  // the kernel (v5.2-v5.12) returned the positive count 10 here
  EXPECT_EQ(locked().locked_pages(), 0u);
  EXPECT_EQ(pinner().pinned_pages(), 0u);
  EXPECT_TRUE(reg().empty());
}

TEST_F(RegistryTest, NormalMemoryRunningIntoGpuRamIsEfault) {
  TestMapping normal(8 * k64K);
  FakeGpuRam gpu(reg(), pinner(), 8);
  // Pretend GPU RAM directly follows the normal pages, as one user range: [normal, normal + 8) U special.
  ASSERT_TRUE(pinner().add_special_mapping(normal.ua() + 4 * k64K, 4 * k64K));
  EXPECT_EQ(reg().add_regular(normal.ua(), 8).error(), kEFAULT);
  EXPECT_EQ(locked().locked_pages(), 0u);
  EXPECT_EQ(pinner().pinned_pages(), 0u);
}

TEST_F(RegistryTest, GpuRamRegisteredAgainExactlyIsSharedWithoutCharge) {
  FakeGpuRam gpu(reg(), pinner(), 32);
  auto again = reg().get(gpu.map.ua(), 32);  // what a REGISTER of exactly the mmap does first
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, gpu.region);
  EXPECT_EQ(gpu.region->used(), 2u);
  EXPECT_EQ(locked().locked_pages(), 0u);
  EXPECT_EQ(pinner().pinned_pages(), 0u);
  ASSERT_TRUE(reg().put(*again));
  ASSERT_TRUE(reg().put(gpu.region));
  EXPECT_TRUE(reg().empty());
}

TEST_F(RegistryTest, DeviceMemoryIsNeverPinnedOrCharged) {
  TestMapping m(4 * k64K);
  auto dev = reg().add_device(m.ua(), 4, kGpuHpa);
  ASSERT_TRUE(dev);
  EXPECT_TRUE((*dev)->is_device());
  EXPECT_EQ(pinner().pinned_pages(), 0u);
  EXPECT_EQ(locked().locked_pages(), 0u);
  ASSERT_TRUE(reg().put(*dev));
  EXPECT_EQ(pinner().unbalanced_unpins(), 0u);
  EXPECT_EQ(locked().underflows(), 0u);
}

TEST_F(RegistryTest, OverRlimitWithoutCapIsEnomem) {
  make(MemlockPolicy::fixed(8 * k64K, false));
  TestMapping m(16 * k64K);
  ASSERT_TRUE(reg().add_regular(m.ua(), 4));
  EXPECT_EQ(reg().add_regular(m.ua() + 4 * k64K, 5).error(), kENOMEM);
  EXPECT_EQ(locked().locked_pages(), 4u);
  EXPECT_EQ(pinner().pinned_pages(), 4u) << "nothing pinned for the refused one";
  locked().set_policy(MemlockPolicy::fixed(8 * k64K, true));
  ASSERT_TRUE(reg().add_regular(m.ua() + 4 * k64K, 12)) << "CAP_IPC_LOCK passes the limit";
  EXPECT_EQ(locked().locked_pages(), 16u);
}

TEST_F(RegistryTest, UnmappedAddressIsEfaultAndChargeRolledBack) {
  TestMapping m(4 * k64K);
  const uint64_t ua = m.ua();
  m.punch(0, 4 * k64K);
  EXPECT_EQ(reg().add_regular(ua, 4).error(), kEFAULT);
  EXPECT_EQ(locked().locked_pages(), 0u);
}

TEST_F(RegistryTest, ReadOnlyMemoryIsEfault) {
  TestMapping m(4 * k64K, k64K, PROT_READ);
  EXPECT_EQ(reg().add_regular(m.ua(), 4).error(), kEFAULT);
  EXPECT_EQ(locked().locked_pages(), 0u);
}

TEST_F(RegistryTest, SizeZeroIsEinval) {
  TestMapping m(k64K);
  EXPECT_EQ(reg().add_regular(m.ua(), 0).error(), kEINVAL);  // kernel: ENOMEM (zero-length allocation)
  EXPECT_EQ(reg().add_device(m.ua(), 0, kGpuHpa).error(), kEINVAL);
  EXPECT_EQ(locked().locked_pages(), 0u);
}

TEST_F(RegistryTest, Hugetlb2MiBRegionHasPageShift21) {
  TestMapping m(4 * k2M, k2M);
  shifts_->set(m.ua(), m.len(), 21);
  auto r = reg().add_regular(m.ua(), m.pages());
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)->page_shift(), 21u);
  auto hpa = (*r)->ua_to_hpa(m.ua() + k2M, 21);
  ASSERT_TRUE(hpa);
  EXPECT_EQ(*hpa % k2M, 0u) << "a 2 MiB TCE gets a 2 MiB-aligned hpa";
  EXPECT_EQ(pinner().hpa_page_shift(*hpa), 21u);
  EXPECT_EQ((*r)->ua_to_hpa(m.ua(), 24).error(), kEFAULT);
}

TEST_F(RegistryTest, SameRangeWithNormalPagesHasPageShift16) {
  TestMapping m(4 * k2M, k2M);
  auto r = reg().add_regular(m.ua(), m.pages());
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)->page_shift(), 16u);
  EXPECT_EQ((*r)->ua_to_hpa(m.ua(), 21).error(), kEFAULT);
}

TEST_F(RegistryTest, MixedHugeThenNormalPagesGivePageShift16) {
  TestMapping m(4 * k2M, k2M);
  shifts_->set(m.ua(), 2 * k2M, 21);  // huge pages first, normal pages after: the kernel kept 21
  auto r = reg().add_regular(m.ua(), m.pages());
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)->page_shift(), 16u);
}

TEST_F(RegistryTest, PutWhileMappedIsEbusyAndKeepsTheRegion) {
  TestMapping m(4 * k64K);
  auto r = *reg().add_regular(m.ua(), 4);
  ASSERT_TRUE(r->mapped_inc());  // one TCE
  EXPECT_EQ(reg().put(r).error(), kEBUSY);
  EXPECT_EQ(r->used(), 1u) << "used restored";
  EXPECT_EQ(r->mapped(), 2u);
  EXPECT_EQ(reg().lookup(m.ua(), k64K), r);
  EXPECT_EQ(locked().locked_pages(), 4u);
  r->mapped_dec();
  ASSERT_TRUE(reg().put(r));
  EXPECT_EQ(r->mapped(), 0u);
  EXPECT_EQ(r->mapped_inc().error(), kENXIO) << "a stale handle can never map a released region";
  EXPECT_EQ(reg().put(r).error(), kENOENT) << "already released";
  EXPECT_EQ(reg().put(nullptr).error(), kENOENT);
  EXPECT_EQ(locked().locked_pages(), 0u);
  EXPECT_EQ(locked().underflows(), 0u);
}

TEST_F(RegistryTest, LookupFindsTheRegionFullyContainingTheRange) {
  TestMapping m(32 * k64K);
  auto a = *reg().add_regular(m.ua(), 8);
  auto b = *reg().add_regular(m.ua() + 8 * k64K, 8);
  auto guard = reg().read();
  EXPECT_EQ(guard.lookup(m.ua(), 8 * k64K), a.get());
  EXPECT_EQ(guard.lookup(m.ua() + 9 * k64K + 12, 4096), b.get());
  EXPECT_EQ(guard.lookup(m.ua() + 7 * k64K, 2 * k64K), nullptr) << "straddles a and b";
  EXPECT_EQ(guard.lookup(m.ua() + 15 * k64K, 2 * k64K), nullptr) << "runs past b";
  EXPECT_EQ(guard.lookup(m.ua() + 16 * k64K, k64K), nullptr);
  EXPECT_EQ(guard.lookup(m.ua() - k64K, k64K), nullptr);
  EXPECT_EQ(guard.lookup(m.ua(), 0), nullptr);
}

TEST_F(RegistryTest, IsDevmemClipsTheSizeToTheDeviceWindow) {
  TestMapping m(16 * k64K);
  auto dev = *reg().add_device(m.ua(), 16, kGpuHpa);  // 1 MiB of GPU RAM
  auto guard = reg().read();
  EXPECT_EQ(guard.is_devmem(kGpuHpa, 16), k64K);
  EXPECT_EQ(guard.is_devmem(kGpuHpa, 20), uint64_t{1} << 20);
  EXPECT_EQ(guard.is_devmem(kGpuHpa + 15 * k64K, 24), k64K) << "only 64 KiB left before the end";
  EXPECT_EQ(guard.is_devmem(kGpuHpa + 8 * k64K + 0x100, 20), 8 * k64K - 0x100);
  EXPECT_EQ(guard.is_devmem(kGpuHpa + 16 * k64K, 16), std::nullopt);
  EXPECT_EQ(guard.is_devmem(kGpuHpa - 1, 16), std::nullopt);
  EXPECT_EQ(guard.is_devmem(0, 16), std::nullopt) << "regular memory is not devmem";
}

TEST_F(RegistryTest, IsDevmemWithSeveralGpus) {
  TestMapping m(64 * k64K);
  const uint64_t gpu1 = kGpuHpa + (uint64_t{0x20} << 32);
  ASSERT_TRUE(reg().add_device(m.ua(), 32, gpu1));
  ASSERT_TRUE(reg().add_device(m.ua() + 32 * k64K, 16, kGpuHpa));
  EXPECT_EQ(reg().is_devmem(gpu1 + 31 * k64K, 16), k64K);
  EXPECT_EQ(reg().is_devmem(kGpuHpa + 15 * k64K, 16), k64K);
  EXPECT_EQ(reg().is_devmem(kGpuHpa + 16 * k64K, 16), std::nullopt);
}

// is_devmem rejects an hpa outside the span of every device region before it searches: the span must follow the
// regions as they come and go.
TEST_F(RegistryTest, IsDevmemFollowsDeviceRegionsAddedAndRemoved) {
  TestMapping m(64 * k64K);
  const uint64_t gpu1 = kGpuHpa + (uint64_t{0x20} << 32);
  auto low = *reg().add_device(m.ua(), 16, kGpuHpa);
  auto high = *reg().add_device(m.ua() + 16 * k64K, 32, gpu1);
  EXPECT_EQ(reg().is_devmem(kGpuHpa, 16), k64K);
  EXPECT_EQ(reg().is_devmem(gpu1 + 31 * k64K, 16), k64K);
  EXPECT_EQ(reg().is_devmem(gpu1 + 32 * k64K, 16), std::nullopt);
  ASSERT_TRUE(reg().put(low));
  EXPECT_EQ(reg().is_devmem(kGpuHpa, 16), std::nullopt);
  EXPECT_EQ(reg().read().is_devmem(gpu1, 16), k64K);
  ASSERT_TRUE(reg().put(high));
  EXPECT_EQ(reg().read().is_devmem(gpu1, 16), std::nullopt);
  auto again = *reg().add_device(m.ua(), 16, kGpuHpa);
  EXPECT_EQ(reg().read().is_devmem(kGpuHpa + 15 * k64K, 16), k64K);
  EXPECT_EQ(reg().read().is_devmem(gpu1, 16), std::nullopt);
}

TEST_F(RegistryTest, ForEachVisitsRegionsInAddressOrder) {
  TestMapping m(8 * k64K);
  ASSERT_TRUE(reg().add_device(m.ua() + 4 * k64K, 4, kGpuHpa));
  ASSERT_TRUE(reg().add_regular(m.ua(), 2));
  std::vector<uint64_t> seen;
  reg().for_each([&](const RegisteredRegion& r) { seen.push_back(r.ua()); });
  EXPECT_EQ(seen, (std::vector<uint64_t>{m.ua(), m.ua() + 4 * k64K}));
}

TEST_F(RegistryTest, HpasOfTheRegionAreThePinnersAndReachTheClient) {
  TestMapping m(4 * k64K);
  auto r = *reg().add_regular(m.ua(), 4);
  const uint64_t hpa = *r->ua_to_hpa(m.ua() + 2 * k64K + 40, 16);
  EXPECT_EQ(pinner().hpa_to_ua(hpa), m.ua() + 2 * k64K + 40);
  const uint32_t value = 0xC0FFEE;
  ASSERT_TRUE(pinner().dma_write(hpa, std::as_bytes(std::span(&value, 1))));
  EXPECT_EQ(*reinterpret_cast<uint32_t*>(m.bytes() + 2 * k64K + 40), value);
}

// UNREGISTER racing MAP. Either the map wins (put gives EBUSY) or the unregister wins (the map finds nothing
// or gets ENXIO). Never a counted mapping on a released region.
TEST_F(RegistryTest, UnregisterRacingMapNeverLeavesAMappingOnAFreedRegion) {
  TestMapping m(4 * k64K);
  int map_won = 0, unregister_won = 0;
  for (int round = 0; round < 2000; ++round) {
    auto region = *reg().add_regular(m.ua(), 4);
    std::atomic<bool> go{false};
    bool mapped = false;
    std::thread mapper([&] {
      while (!go.load()) {
      }
      auto guard = reg().read();  // a MAP_DMA: one guard for the range
      if (RegisteredRegion* r = guard.lookup(m.ua() + k64K, k64K)) mapped = r->mapped_inc().has_value();
    });
    Result<void> put;
    std::thread unregister([&] {
      while (!go.load()) {
      }
      put = reg().put(region);
    });
    go = true;
    mapper.join();
    unregister.join();
    if (put) {
      ++unregister_won;
      ASSERT_FALSE(mapped) << "round " << round;
      ASSERT_EQ(region->mapped(), 0u);
      ASSERT_TRUE(reg().empty());
    } else {
      ++map_won;
      ASSERT_EQ(put.error(), kEBUSY);
      ASSERT_TRUE(mapped);
      ASSERT_EQ(region->mapped(), 2u);
      region->mapped_dec();  // the UNMAP
      ASSERT_TRUE(reg().put(region));
    }
  }
  std::printf("[ race     ] map won %d, unregister won %d\n", map_won, unregister_won);
  EXPECT_EQ(locked().locked_pages(), 0u);
  EXPECT_EQ(pinner().pinned_pages(), 0u);
}

TEST_F(RegistryTest, ConcurrentRegisterLookupMapUnregister) {
  constexpr int kThreads = 4, kSlots = 8, kRounds = 3000;
  TestMapping m(kSlots * 4 * k64K);
  std::atomic<uint64_t> live_maps{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      std::vector<std::pair<RegionRef, int>> held;  // region, TCEs this thread counted on it
      for (int i = 0; i < kRounds; ++i) {
        const uint64_t ua = m.ua() + (rng() % kSlots) * 4 * k64K;
        switch (rng() % 4) {
          case 0: {  // REGISTER: share an exact match or create
            auto r = reg().get(ua, 4);
            if (!r) r = reg().add_regular(ua, 4);
            if (!r) r = reg().get(ua, 4);  // lost a creation race
            if (r) held.push_back({*r, 0});
            break;
          }
          case 1: {  // MAP one page of a region we hold
            if (held.empty()) break;
            auto& [r, maps] = held[rng() % held.size()];
            auto guard = reg().read();
            RegisteredRegion* found = guard.lookup(r->ua() + k64K, k64K);
            ASSERT_EQ(found, r.get()) << "a region we hold stays linked";
            if (found->mapped_inc()) {
              ++maps;
              live_maps.fetch_add(1);
            }
            break;
          }
          case 2: {  // UNMAP everything on one region, then UNREGISTER it
            if (held.empty()) break;
            size_t k = rng() % held.size();
            auto& [r, maps] = held[k];
            for (; maps > 0; --maps) {
              r->mapped_dec();
              live_maps.fetch_sub(1);
            }
            auto put = reg().put(r);
            if (!put) {
              ASSERT_EQ(put.error(), kEBUSY);  // another thread still maps it: keep our reference, retry later
              break;
            }
            held.erase(held.begin() + k);
            break;
          }
          case 3: {  // a lookup that may miss
            auto guard = reg().read();
            if (RegisteredRegion* r = guard.lookup(ua, 4 * k64K)) {
              ASSERT_GE(r->mapped(), 1u);
            }
            break;
          }
        }
      }
      // Clean up: unmap all, then put until each reference is gone.
      for (auto& [r, maps] : held) {
        for (; maps > 0; --maps) {
          r->mapped_dec();
          live_maps.fetch_sub(1);
        }
      }
      for (auto& [r, maps] : held) {
        while (true) {
          auto put = reg().put(r);
          if (put) break;
          ASSERT_EQ(put.error(), kEBUSY);
          std::this_thread::yield();
        }
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(live_maps.load(), 0u);
  EXPECT_TRUE(reg().empty());
  EXPECT_EQ(locked().locked_pages(), 0u);
  EXPECT_EQ(locked().underflows(), 0u);
  EXPECT_EQ(pinner().pinned_pages(), 0u);
  EXPECT_EQ(pinner().unbalanced_unpins(), 0u);
}

}  // namespace
}  // namespace nv2pt::mm
