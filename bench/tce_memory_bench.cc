// Figure 6: TCE table memory for the seed's layout, mapped for real through the container: 16 GiB of guest RAM at
// bus 0 and the six GPUs' RAM at their host window addresses, 64 KiB pages, 2 levels over the 2^46 window, levels
// on demand. The bytes the table allocated (hardware table + user-address cache) against the minimum — the top
// blocks plus one leaf block per leaf actually touched, counted here from the layout alone — and beside the flat
// and power-of-two figures `nv2pt plan` prints (cli::make_plan).
//
// Guest RAM is one 256 MiB registration mapped 64 times (MAP_DMA allows many IOVAs over one ua), so the figure
// needs no 16 GiB of pinned memory; GPU RAM is registered as device memory, as its mmap does, and never touched.
// Arg: 0 maps each GPU's whole 128 GiB window (`nv2pt plan`'s default), 1 only its 16 GiB of real RAM.
#include <benchmark/benchmark.h>

#include <set>

#include "bench/bench_util.h"
#include "cli/window_plan.h"

namespace nv2pt::bench {
namespace {

constexpr uint64_t kGpuRamHpa[] = {0x0400'0000'0000, 0x0420'0000'0000, 0x0440'0000'0000,
                                   0x2400'0000'0000, 0x2420'0000'0000, 0x2440'0000'0000};
constexpr uint64_t kGpuWindow = 128 * GiB, kGpuReal = 16 * GiB, kGuestRam = 16 * GiB;
constexpr uint64_t kWindow = uint64_t{1} << 46;
constexpr uint64_t kChunk = 256 * MiB;

void BM_TceTableMemorySeedLayout(benchmark::State& state) {
  const bool real_only = state.range(0) == 1;
  const uint64_t gpu_bytes = real_only ? kGpuReal : kGpuWindow;
  for (auto _ : state) {
    V2Container c;
    if (!c.init(16, kWindow, 2)) return state.SkipWithError("container setup");
    const uint64_t at_creation = c.table().allocated_bytes();
    ClientMemory ram(kChunk);
    if (c.register_memory(ram.ua(), ram.size()) != 0) return state.SkipWithError("REGISTER_MEMORY");
    std::vector<cli::PlanRange> ranges{{"guest RAM", 0, kGuestRam}};
    for (uint64_t iova = 0; iova < kGuestRam; iova += kChunk)
      if (c.map(ram.ua(), iova, kChunk) != 0) return state.SkipWithError("MAP_DMA guest RAM");
    std::vector<std::unique_ptr<ClientMemory>> gpu;
    for (uint64_t hpa : kGpuRamHpa) {
      auto& m = gpu.emplace_back(std::make_unique<ClientMemory>(kGpuWindow, PROT_NONE));
      if (!c.as().registry().add_device(m->ua(), kGpuWindow >> 16, hpa)) return state.SkipWithError("add_device");
      if (c.register_memory(m->ua(), kGpuWindow) != 0) return state.SkipWithError("REGISTER_MEMORY GPU RAM");
      if (c.map(m->ua(), hpa, gpu_bytes) != 0) return state.SkipWithError("MAP_DMA GPU RAM");
      ranges.push_back({"GPU", hpa, gpu_bytes});
    }
    const iommu::TceTable& t = c.table();
    // The minimum, from the layout alone: distinct leaf blocks under the mapped entries, plus the top block, for
    // the table and for its cache.
    std::set<uint64_t> leaves;
    const uint64_t per_leaf = t.geometry().entries_per_leaf();
    for (const auto& r : ranges)
      for (uint64_t e = r.start >> 16; e < (r.start + r.size) >> 16; e += per_leaf) leaves.insert(e / per_leaf);
    const uint64_t minimum = 2 * (leaves.size() + 1) * t.geometry().block_bytes();
    const uint64_t allocated = t.allocated_bytes();

    auto plan = cli::make_plan({.ranges = ranges, .page_shift = 16});
    if (!plan) return state.SkipWithError("make_plan");
    state.counters["allocated_bytes"] = static_cast<double>(allocated);
    state.counters["minimum_bytes"] = static_cast<double>(minimum);
    state.counters["over_minimum_pct"] = 100.0 * (static_cast<double>(allocated) / static_cast<double>(minimum) - 1);
    state.counters["at_creation_bytes"] = static_cast<double>(at_creation);
    state.counters["leaf_blocks"] = static_cast<double>(leaves.size());
    uint64_t tces = 0;
    for (const auto& r : ranges) tces += r.size >> 16;
    state.counters["tces"] = static_cast<double>(tces);
    state.counters["plan_exact_flat_bytes"] = static_cast<double>(plan->exact_fit_flat_bytes);
    state.counters["plan_pow2_flat_bytes"] = static_cast<double>(plan->pow2_flat_bytes);
    state.counters["plan_2level_layout_bytes"] = static_cast<double>(plan->levels[1].allocated_for_layout);
    state.counters["charged_bytes"] = static_cast<double>(c.iommu().charged_pages() << 16);
    // Leave nothing mapped: the container's release would do it too, but this keeps the registry's EBUSY away.
    c.unmap(0, kGuestRam);
    for (uint64_t hpa : kGpuRamHpa) c.unmap(hpa, gpu_bytes);
  }
}

BENCHMARK(BM_TceTableMemorySeedLayout)->Arg(0)->Arg(1)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace nv2pt::bench
