// Figure 3: VFIO_IOMMU_SPAPR_REGISTER_MEMORY of 8 GiB of client memory through the container ioctl, against the
// cost of touching the same pages (madvise(MADV_POPULATE_WRITE)) in the same run. The memory is made resident
// once first, so both sides walk present page tables and the difference is what the model adds (charge, pin
// extents, frames, the hpa array, the backing page sizes). A cold variant (fresh memory every time, 1 GiB) shows
// the fault-in cost the kernel itself pays in both.
//
// Locked-memory accounting is asserted on every iteration: +entries after REGISTER, back to the start after
// UNREGISTER, and every page pinned exactly once.
#include <benchmark/benchmark.h>

#include <chrono>
#include <map>

#include "bench/bench_util.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace nv2pt::bench {
namespace {

using Clock = std::chrono::steady_clock;
double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// The registered memory stays mapped (and resident) across benchmarks: 8 GiB is faulted in once.
ClientMemory& resident(uint64_t size) {
  static std::map<uint64_t, std::unique_ptr<ClientMemory>> memories;
  auto& m = memories[size];
  if (!m) {
    m = std::make_unique<ClientMemory>(size);
    if (madvise(m->ptr(), size, MADV_POPULATE_WRITE) != 0) m = std::make_unique<ClientMemory>(0, PROT_NONE);
  }
  return *m;
}

void BM_PopulateResident(benchmark::State& state) {
  const uint64_t size = static_cast<uint64_t>(state.range(0)) * GiB;
  ClientMemory& m = resident(size);
  if (!m.ok()) return state.SkipWithError("populate failed");
  for (auto _ : state) {
    const auto t0 = Clock::now();
    const int rc = madvise(m.ptr(), size, MADV_POPULATE_WRITE);
    state.SetIterationTime(seconds(t0, Clock::now()));
    if (rc != 0) return state.SkipWithError("madvise failed");
  }
  state.counters["gib"] = static_cast<double>(state.range(0));
}

void BM_RegisterResident(benchmark::State& state) {
  const uint64_t size = static_cast<uint64_t>(state.range(0)) * GiB;
  ClientMemory& m = resident(size);
  if (!m.ok()) return state.SkipWithError("populate failed");
  V2Container c;
  if (!c.init(16, uint64_t{1} << 46, 2)) return state.SkipWithError("container setup");
  mm::LockedMemory& locked = c.as().locked_memory();
  const uint64_t entries = size >> 16;
  double unregister_s = 0;
  for (auto _ : state) {
    const uint64_t before = locked.locked_pages();
    const auto t0 = Clock::now();
    const long rc = c.register_memory(m.ua(), size);
    state.SetIterationTime(seconds(t0, Clock::now()));
    if (rc != 0) return state.SkipWithError("REGISTER_MEMORY failed");
    // Exact accounting: one 64 KiB page charged and pinned per entry, nothing else.
    if (locked.locked_pages() != before + entries || c.as().pinner().pinned_pages() != entries)
      return state.SkipWithError("locked-memory accounting is not exact after REGISTER");
    const auto t1 = Clock::now();
    if (c.unregister_memory(m.ua(), size) != 0) return state.SkipWithError("UNREGISTER_MEMORY failed");
    unregister_s += seconds(t1, Clock::now());
    if (locked.locked_pages() != before || c.as().pinner().pinned_pages() != 0)
      return state.SkipWithError("locked-memory accounting is not exact after UNREGISTER");
  }
  state.counters["gib"] = static_cast<double>(state.range(0));
  state.counters["unregister_us"] = unregister_s * 1e6 / static_cast<double>(state.iterations());
  state.counters["locked_pages_per_gib"] = static_cast<double>(entries) / static_cast<double>(state.range(0));
}

// Cold: fresh anonymous memory every iteration, faulted in by madvise alone or by REGISTER.
void BM_PopulateCold(benchmark::State& state) {
  const uint64_t size = static_cast<uint64_t>(state.range(0)) * GiB;
  for (auto _ : state) {
    ClientMemory m(size);
    const auto t0 = Clock::now();
    const int rc = madvise(m.ptr(), size, MADV_POPULATE_WRITE);
    state.SetIterationTime(seconds(t0, Clock::now()));
    if (rc != 0) return state.SkipWithError("madvise failed");
  }
  state.counters["gib"] = static_cast<double>(state.range(0));
}

void BM_RegisterCold(benchmark::State& state) {
  const uint64_t size = static_cast<uint64_t>(state.range(0)) * GiB;
  V2Container c;
  if (!c.init(16, uint64_t{1} << 46, 2)) return state.SkipWithError("container setup");
  for (auto _ : state) {
    ClientMemory m(size);
    const auto t0 = Clock::now();
    const long rc = c.register_memory(m.ua(), size);
    state.SetIterationTime(seconds(t0, Clock::now()));
    if (rc != 0) return state.SkipWithError("REGISTER_MEMORY failed");
    if (c.unregister_memory(m.ua(), size) != 0) return state.SkipWithError("UNREGISTER_MEMORY failed");
  }
  state.counters["gib"] = static_cast<double>(state.range(0));
}

BENCHMARK(BM_PopulateResident)->Arg(8)->Arg(1)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_RegisterResident)->Arg(8)->Arg(1)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_PopulateCold)->Arg(1)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(2);
BENCHMARK(BM_RegisterCold)->Arg(1)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(2);

}  // namespace
}  // namespace nv2pt::bench
