// Figure 3: VFIO_IOMMU_SPAPR_REGISTER_MEMORY of 8 GiB of client memory through the container ioctl, against the
// cost of touching the same pages (madvise(MADV_POPULATE_WRITE)) in the same run. The memory is made resident
// once first, so both sides walk present page tables and the difference is what the model adds (charge, pin
// extents, frames, the hpa array, the backing page sizes). A cold variant (fresh memory every time, 1 GiB) shows
// the fault-in cost the kernel itself pays in both. Each figure is the median over iterations of REGISTER minus
// the touch measured right beside it.
//
// Locked-memory accounting is asserted on every iteration: +entries after REGISTER, back to the start after
// UNREGISTER, and every page pinned exactly once.
#include <benchmark/benchmark.h>

#include <map>

#include "bench/bench_util.h"
#include "bench/timing.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace nv2pt::bench {
namespace {

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

// One iteration: the touch cost of the memory (MADV_POPULATE_WRITE over it) and REGISTER of it, back to back, in
// alternating order so that drift and ordering hit both alike; the figure is the median of the per-iteration
// differences. Iteration time is REGISTER's.
// Both wall time and the thread's CPU time (CLOCK_THREAD_CPUTIME_ID, user + system, exact): on a machine shared
// with builds the wall clock also counts preemption, the CPU clock only the work.
struct Pair {
  double touch_s;
  double register_s;
  double touch_cpu_s;
  double register_cpu_s;
};

void report_pairs(benchmark::State& state, std::vector<Pair>& pairs, double gib) {
  std::vector<double> touch, reg, beyond, touch_cpu, reg_cpu, beyond_cpu;
  for (const Pair& p : pairs) {
    touch.push_back(p.touch_s * 1e3);
    reg.push_back(p.register_s * 1e3);
    beyond.push_back((p.register_s - p.touch_s) * 1e3 / gib);
    touch_cpu.push_back(p.touch_cpu_s * 1e3);
    reg_cpu.push_back(p.register_cpu_s * 1e3);
    beyond_cpu.push_back((p.register_cpu_s - p.touch_cpu_s) * 1e3 / gib);
  }
  state.counters["gib"] = gib;
  state.counters["touch_ms"] = percentile(touch, 50);
  state.counters["register_ms"] = percentile(reg, 50);
  state.counters["beyond_ms_per_gib"] = percentile(beyond, 50);
  state.counters["touch_cpu_ms"] = percentile(touch_cpu, 50);
  state.counters["register_cpu_ms"] = percentile(reg_cpu, 50);
  state.counters["beyond_cpu_ms_per_gib"] = percentile(beyond_cpu, 50);
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
  std::vector<Pair> pairs;
  for (auto _ : state) {
    const uint64_t before = locked.locked_pages();
    Pair p{};
    for (int step = 0; step < 2; ++step) {
      if ((step == 0) == (pairs.size() % 2 == 0)) {
        if (timed(p.touch_s, p.touch_cpu_s, [&] { return madvise(m.ptr(), size, MADV_POPULATE_WRITE); }) != 0)
          return state.SkipWithError("madvise failed");
      } else {
        if (timed(p.register_s, p.register_cpu_s, [&] { return c.register_memory(m.ua(), size); }) != 0)
          return state.SkipWithError("REGISTER_MEMORY failed");
        // Exact accounting: one 64 KiB page charged and pinned per entry, nothing else.
        if (locked.locked_pages() != before + entries || c.as().pinner().pinned_pages() != entries)
          return state.SkipWithError("locked-memory accounting is not exact after REGISTER");
        const auto t1 = Clock::now();
        if (c.unregister_memory(m.ua(), size) != 0) return state.SkipWithError("UNREGISTER_MEMORY failed");
        unregister_s += seconds(t1, Clock::now());
        if (locked.locked_pages() != before || c.as().pinner().pinned_pages() != 0)
          return state.SkipWithError("locked-memory accounting is not exact after UNREGISTER");
      }
    }
    state.SetIterationTime(p.register_s);
    pairs.push_back(p);
  }
  report_pairs(state, pairs, static_cast<double>(state.range(0)));
  state.counters["unregister_us"] = unregister_s * 1e6 / static_cast<double>(state.iterations());
  state.counters["locked_pages_per_gib"] = static_cast<double>(entries) / static_cast<double>(state.range(0));
}

// Cold: fresh anonymous memory for each side of every iteration, faulted in by madvise alone or by REGISTER. (In a
// VM the first touch of guest-physical memory the host has not backed yet costs far more than a reuse: the pairs
// share that fate only when they alternate, hence the same scheme.)
void BM_RegisterCold(benchmark::State& state) {
  const uint64_t size = static_cast<uint64_t>(state.range(0)) * GiB;
  V2Container c;
  if (!c.init(16, uint64_t{1} << 46, 2)) return state.SkipWithError("container setup");
  std::vector<Pair> pairs;
  for (auto _ : state) {
    Pair p{};
    for (int step = 0; step < 2; ++step) {
      ClientMemory m(size);
      if ((step == 0) == (pairs.size() % 2 == 0)) {
        if (timed(p.touch_s, p.touch_cpu_s, [&] { return madvise(m.ptr(), size, MADV_POPULATE_WRITE); }) != 0)
          return state.SkipWithError("madvise failed");
      } else {
        if (timed(p.register_s, p.register_cpu_s, [&] { return c.register_memory(m.ua(), size); }) != 0)
          return state.SkipWithError("REGISTER_MEMORY failed");
        if (c.unregister_memory(m.ua(), size) != 0) return state.SkipWithError("UNREGISTER_MEMORY failed");
      }
    }
    state.SetIterationTime(p.register_s);
    pairs.push_back(p);
  }
  report_pairs(state, pairs, static_cast<double>(state.range(0)));
}

BENCHMARK(BM_RegisterResident)->Arg(8)->Arg(1)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(6);
BENCHMARK(BM_RegisterCold)->Arg(1)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(4);

}  // namespace
}  // namespace nv2pt::bench
