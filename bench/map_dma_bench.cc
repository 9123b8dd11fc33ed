// Figure 2: MAP_DMA / UNMAP_DMA of 1 GiB through the container ioctl (registry -> TCE table -> user-address
// cache), 2-level table over the seed's 2^46 window, 64 KiB and 4 KiB IOMMU pages; against
//   - the memory-bandwidth floor: a plain loop storing the same number of 8-byte entries, and
//   - the kernel's algorithm (bench/kernel_reference.h) over the same regions and the same table geometry.
// The registry holds what a 6-GPU QEMU's mm holds: guest RAM, then the six GPU-RAM device regions (so the kernel's
// newest-first list walks six device regions before it finds guest RAM, and is_devmem walks all seven).
//
// Steady state: every iteration maps into leaves that exist (allocated by the first map, never freed), as for a
// guest that maps and unmaps the same window.
#include <benchmark/benchmark.h>

#include <cstring>
#include <map>

#include "bench/bench_util.h"
#include "bench/kernel_reference.h"
#include "bench/timing.h"
#include "iommu/table_geometry.h"

namespace nv2pt::bench {
namespace {

constexpr uint64_t kMapBytes = 1 * GiB;
constexpr uint64_t kWindow = uint64_t{1} << 46;
constexpr uint64_t kGpuRamHpa[] = {0x0400'0000'0000, 0x0420'0000'0000, 0x0440'0000'0000,
                                   0x2400'0000'0000, 0x2420'0000'0000, 0x2440'0000'0000};
constexpr uint64_t kGpuWindow = 128 * GiB;

struct MapRig {
  V2Container container;
  ClientMemory ram{kMapBytes};
  std::vector<std::unique_ptr<ClientMemory>> gpu_ram;
  KernelRegionList kernel_regions;
  std::unique_ptr<iommu::TceTable> kernel_table;
  std::string error;

  explicit MapRig(unsigned page_shift) {
    if (!container.init(page_shift, kWindow, 2)) {
      fail("container setup");
      return;
    }
    if (container.register_memory(ram.ua(), ram.size()) != 0) {
      fail("REGISTER_MEMORY");
      return;
    }
    auto kr = std::make_unique<KernelRegion>();
    const mm::RegionRef region = container.as().registry().lookup(ram.ua(), ram.size());
    kr->ua = ram.ua();
    kr->entries = region->entries();
    kr->page_shift = region->page_shift();
    for (uint64_t e = 0; e < region->entries(); ++e) kr->hpas.push_back(region->page_hpa(e));
    kernel_regions.add(std::move(kr));
    // The GPU RAM mmaps: device regions at the GPUs' host windows (nothing touched, nothing pinned).
    for (uint64_t hpa : kGpuRamHpa) {
      auto& m = gpu_ram.emplace_back(std::make_unique<ClientMemory>(kGpuWindow, PROT_NONE));
      if (!container.as().registry().add_device(m->ua(), kGpuWindow >> 16, hpa)) {
        fail("add_device");
        return;
      }
      auto kd = std::make_unique<KernelRegion>();
      kd->ua = m->ua();
      kd->entries = kGpuWindow >> 16;
      kd->page_shift = 30;
      kd->dev_hpa = hpa;
      kernel_regions.add(std::move(kd));
    }
    auto geometry = iommu::compute_geometry(page_shift, kWindow, 2);
    auto table = iommu::TceTable::create(*geometry, 0, {});
    if (!table) {
      fail("kernel table");
      return;
    }
    kernel_table = std::move(*table);
  }
  void fail(const char* what) { error = what; }
  uint64_t pages() { return kMapBytes >> container.table().page_shift(); }
};

// One rig per page shift, kept for the whole run: pinning 1 GiB is REGISTER's cost, not MAP's.
MapRig& rig(unsigned page_shift) {
  static std::map<unsigned, std::unique_ptr<MapRig>> rigs;
  auto& r = rigs[page_shift];
  if (!r) r = std::make_unique<MapRig>(page_shift);
  return *r;
}

void BM_MapDma(benchmark::State& state) {
  MapRig& r = rig(static_cast<unsigned>(state.range(0)));
  if (!r.error.empty()) return state.SkipWithError(r.error.c_str());
  for (auto _ : state) {
    const auto t0 = Clock::now();
    const long rc = r.container.map(r.ram.ua(), 0, kMapBytes);
    const auto t1 = Clock::now();
    if (rc != 0) return state.SkipWithError("MAP_DMA failed");
    state.SetIterationTime(seconds(t0, t1));
    r.container.unmap(0, kMapBytes);
  }
  state.counters["tces"] = static_cast<double>(r.pages());
}

void BM_UnmapDma(benchmark::State& state) {
  MapRig& r = rig(static_cast<unsigned>(state.range(0)));
  if (!r.error.empty()) return state.SkipWithError(r.error.c_str());
  for (auto _ : state) {
    if (r.container.map(r.ram.ua(), 0, kMapBytes) != 0) return state.SkipWithError("MAP_DMA failed");
    const auto t0 = Clock::now();
    const long rc = r.container.unmap(0, kMapBytes);
    const auto t1 = Clock::now();
    if (rc != 0) return state.SkipWithError("UNMAP_DMA failed");
    state.SetIterationTime(seconds(t0, t1));
  }
  const iommu::TceTable& t = r.container.table();
  if (t.get(0) != 0 || t.get(r.pages() - 1) != 0) state.SkipWithError("TCEs left after UNMAP");
  state.counters["tces"] = static_cast<double>(r.pages());
}

void BM_KernelMap(benchmark::State& state) {
  MapRig& r = rig(static_cast<unsigned>(state.range(0)));
  if (!r.error.empty()) return state.SkipWithError(r.error.c_str());
  const uint64_t pages = r.pages();
  for (auto _ : state) {
    const auto t0 = Clock::now();
    const long rc = kernel_build_v2(r.kernel_regions, *r.kernel_table, 0, r.ram.ua(), pages,
                                    iommu::DmaDirection::kBidirectional);
    const auto t1 = Clock::now();
    if (rc != 0) return state.SkipWithError("kernel_build_v2 failed");
    state.SetIterationTime(seconds(t0, t1));
    kernel_clear_v2(r.kernel_regions, *r.kernel_table, 0, pages);
  }
  state.counters["tces"] = static_cast<double>(pages);
}

void BM_KernelUnmap(benchmark::State& state) {
  MapRig& r = rig(static_cast<unsigned>(state.range(0)));
  if (!r.error.empty()) return state.SkipWithError(r.error.c_str());
  const uint64_t pages = r.pages();
  for (auto _ : state) {
    if (kernel_build_v2(r.kernel_regions, *r.kernel_table, 0, r.ram.ua(), pages,
                        iommu::DmaDirection::kBidirectional) != 0)
      return state.SkipWithError("kernel_build_v2 failed");
    const auto t0 = Clock::now();
    kernel_clear_v2(r.kernel_regions, *r.kernel_table, 0, pages);
    state.SetIterationTime(seconds(t0, Clock::now()));
  }
  state.counters["tces"] = static_cast<double>(pages);
}

// The floor: the same number of 8-byte big-endian TCE values stored into an array of the same size.
void BM_WriteFloor(benchmark::State& state) {
  const unsigned shift = static_cast<unsigned>(state.range(0));
  const uint64_t pages = kMapBytes >> shift;
  std::vector<uint64_t> entries(pages);
  uint64_t base = 0x1234'0000;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    uint64_t* e = entries.data();
    for (uint64_t i = 0; i < pages; ++i) e[i] = iommu::to_be((base + (i << shift)) | 3);
    benchmark::ClobberMemory();
    const auto t1 = Clock::now();
    state.SetIterationTime(seconds(t0, t1));
    base += 1ull << 30;
  }
  benchmark::DoNotOptimize(entries.data());
  state.counters["tces"] = static_cast<double>(pages);
}

#define NV2PT_MAP_BENCH(fn) BENCHMARK(fn)->Arg(16)->Arg(12)->UseManualTime()->Unit(benchmark::kMicrosecond)
NV2PT_MAP_BENCH(BM_MapDma);
NV2PT_MAP_BENCH(BM_UnmapDma);
NV2PT_MAP_BENCH(BM_KernelMap);
NV2PT_MAP_BENCH(BM_KernelUnmap);
NV2PT_MAP_BENCH(BM_WriteFloor);

}  // namespace
}  // namespace nv2pt::bench
