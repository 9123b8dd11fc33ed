// Figure 4: GPU RAM first touch. platform::Hardware over the default machine (log policy, so the checks below can
// count HMIs instead of dying), the GPU's RAM mapped, then:
//   - a premature touch: one byte before the links are trained, which must be one HMI at that very address;
//   - the GPU's NVLinks trained through the NPU2 bridges' procedure interface (config writes, as the guest driver
//     does through VFIO), which hands the real RAM to the kernel's own fault path;
//   - timed: every 4 KiB page of `pages` 64 KiB pages written, the same bytes as BM_ShmemTouchFloor, the kernel's
//     own faults on a fresh memfd; the service thread must handle none of them;
//   - a GPU reset, then one touch of every page: each must be an HMI again (every page re-armed).
// Reports pages/s (64 KiB pages), the per-64 KiB-page latency p50/p99 and the three checks as counters.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "bench/timing.h"
#include "platform/hardware.h"
#include "platform/machine.h"
#include "platform/npu2_bridge.h"

namespace nv2pt::bench {
namespace {

using platform::Npu2Bridge;

bool train_links(platform::Hardware& hw, const platform::Machine& machine, const platform::PciAddress& gpu) {
  const platform::Gpu* g = machine.find_gpu(gpu);
  if (!g) return false;
  for (size_t b : g->bridges) {
    platform::PciDeviceModel* bridge = hw.device(machine.bridges()[b].address);
    if (!bridge) return false;
    for (uint32_t p : {Npu2Bridge::kPhyReset, Npu2Bridge::kPhyTxZcal, Npu2Bridge::kPhyRxDccal,
                       Npu2Bridge::kPhyRxTraining}) {
      bridge->config_write(Npu2Bridge::kProcControl, 4, p);
      uint32_t status = 0;
      for (int i = 0; i < 1000 && !(status & Npu2Bridge::kStatusComplete); ++i)
        status = bridge->config_read(Npu2Bridge::kProcStatus, 4);
      if ((status & Npu2Bridge::kStatusCodeMask) != Npu2Bridge::kCodeSuccess) return false;
    }
  }
  return hw.gpu_links_trained(gpu);
}

// A fresh shared memfd mapping of `len` bytes, nothing populated; MAP_FAILED (and fd -1) if the kernel refuses.
void* map_fresh_memfd(const char* name, uint64_t len, int& fd) {
  fd = memfd_create(name, MFD_CLOEXEC);
  void* map = fd < 0 || ftruncate(fd, static_cast<off_t>(len)) != 0
                  ? MAP_FAILED
                  : mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED && fd >= 0) {
    close(fd);
    fd = -1;
  }
  return map;
}

// One write to every machine page of `len` bytes.
void touch_every_page(volatile uint8_t* bytes, uint64_t len) {
  const auto small = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  for (uint64_t off = 0; off < len; off += small) bytes[off] = 1;
}

// The kernel's own faults for the same bytes, timed next to each GPU RAM pass (seconds; negative on failure).
double time_kernel_reference(uint64_t len) {
  int fd = -1;
  void* map = map_fresh_memfd("bench-shmem-pair", len, fd);
  if (map == MAP_FAILED) return -1;
  const auto t0 = Clock::now();
  touch_every_page(static_cast<volatile uint8_t*>(map), len);
  const double s = seconds(t0, Clock::now());
  munmap(map, len);
  close(fd);
  return s;
}

void BM_GpuRamFirstTouch(benchmark::State& state) {
  const uint64_t pages = static_cast<uint64_t>(state.range(0));
  const uint64_t page = 64 * KiB;
  const auto small = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const platform::Machine machine = platform::Machine::load_default();
  auto hw = platform::Hardware::create(machine, {.hmi_policy = platform::HmiPolicy::kLog});
  if (!hw) return state.SkipWithError("hardware");
  const platform::PciAddress gpu = platform::PciAddress::parse("0004:04:00.0").value();
  platform::GpuRam* ram = (*hw)->gpu_ram(gpu);
  const platform::HmiLog& log = (*hw)->hmi_log();
  auto mapped = ram->map(nullptr, 0, pages * page, PROT_READ | PROT_WRITE);
  if (!mapped) return state.SkipWithError("GPU RAM map failed");
  auto* bytes = static_cast<volatile uint8_t*>(*mapped);

  // A premature touch: detected at the page (and byte) touched.
  const uint64_t premature = 5 * page + 0x1234;
  bytes[premature] = 1;
  const bool premature_ok = log.count() == 1 && log.entries()[0].hpa == ram->config().window_base + premature &&
                            log.entries()[0].cause == platform::HmiCause::kUntrainedLink;
  ram->discard();
  if (!train_links(**hw, machine, gpu)) return state.SkipWithError("link training failed");
  if (!ram->served_by_kernel()) return state.SkipWithError("trained links, yet the real RAM is not the kernel's");
  const uint64_t hmis_trained = log.count();
  const uint64_t serviced_before = ram->serviced_faults();

  std::vector<double> latency_ns;
  latency_ns.reserve(pages * 8);
  std::vector<double> pair_ratios;  // reference time / GPU RAM time of each pass and its neighbouring reference
  double total_s = 0, reference_s = 0;
  uint64_t n = 0;
  for (auto _ : state) {
    // The reference pass runs next to each GPU RAM pass, before it one time, after it the next (untimed for the
    // framework), so that both see the same load on a shared machine.
    state.PauseTiming();
    if (n > 0) {
      ram->discard();        // every page faults again ...
      ram->links_changed();  // ... and the links are still trained: the kernel's again
    }
    double ref = n % 2 == 0 ? time_kernel_reference(pages * page) : 0;
    state.ResumeTiming();
    const auto t0 = Clock::now();
    auto prev = t0;
    for (uint64_t i = 0; i < pages; ++i) {
      for (uint64_t off = 0; off < page; off += small) bytes[i * page + off] = 1;  // the kernel's faults
      const auto now = Clock::now();
      latency_ns.push_back(std::chrono::duration<double, std::nano>(now - prev).count());
      prev = now;
    }
    const double s = seconds(t0, prev);
    state.SetIterationTime(s);
    state.PauseTiming();
    if (n % 2 == 1) ref = time_kernel_reference(pages * page);
    state.ResumeTiming();
    if (ref <= 0) return state.SkipWithError("reference memfd mapping");
    total_s += s;
    reference_s += ref;
    pair_ratios.push_back(ref / s);
    ++n;
  }
  const uint64_t serviced_trained = ram->serviced_faults() - serviced_before;
  if (log.count() != hmis_trained) return state.SkipWithError("HMI on a trained link");
  if (ram->populated_pages() != pages) return state.SkipWithError("pages not populated");

  // A GPU reset drops the links and must re-arm every page: one touch of each is one HMI.
  (*hw)->device(gpu)->reset(platform::PciDeviceModel::ResetKind::kHot);
  const uint64_t hmis_before_reset = log.count();
  for (uint64_t i = 0; i < pages; ++i) (void)bytes[i * page + small];
  const double rearmed = static_cast<double>(log.count() - hmis_before_reset);

  ram->unmap(*mapped, pages * page);
  munmap(*mapped, pages * page);
  const double touched = static_cast<double>(pages) * static_cast<double>(state.iterations());
  state.counters["pages_per_s"] = touched / total_s;
  state.counters["p50_ns"] = percentile(latency_ns, 50);
  state.counters["p99_ns"] = percentile(latency_ns, 99);
  state.counters["pages"] = static_cast<double>(pages);
  state.counters["reference_pages_per_s"] = touched / reference_s;
  state.counters["ratio_median"] = percentile(pair_ratios, 50);
  state.counters["serviced_faults_trained"] = static_cast<double>(serviced_trained);
  state.counters["premature_detected"] = premature_ok ? 1 : 0;
  state.counters["rearmed_pages"] = rearmed;
}

// Times `touch(bytes)` over a fresh shared memfd mapping of `pages` 64 KiB pages each iteration (so every page
// faults), after `arm(map)` prepared it untimed (false: the mapping is unusable). Reports pages_per_s.
template <class Arm, class Touch>
void time_fresh_mappings(benchmark::State& state, const char* name, uint64_t pages, Arm arm, Touch touch) {
  const uint64_t len = pages * 64 * KiB;
  double total_s = 0;
  for (auto _ : state) {
    state.PauseTiming();
    int memfd = -1;
    void* map = map_fresh_memfd(name, len, memfd);
    if (map == MAP_FAILED || !arm(map, len)) {
      state.SkipWithError("memfd mapping");
      break;
    }
    state.ResumeTiming();
    const auto t0 = Clock::now();
    touch(static_cast<volatile uint8_t*>(map), len);
    const double s = seconds(t0, Clock::now());
    state.SetIterationTime(s);
    total_s += s;
    state.PauseTiming();
    munmap(map, len);
    close(memfd);
    state.ResumeTiming();
  }
  if (total_s > 0)
    state.counters["pages_per_s"] = static_cast<double>(pages) * static_cast<double>(state.iterations()) / total_s;
}

// What the kernel itself takes to back the same bytes: a fresh shmem memfd mapping, no userfaultfd, every 4 KiB
// page of each 64 KiB page written, so each 64 KiB page costs sixteen ordinary shmem faults: the reference for the
// trained first touch, which writes the same bytes.
void BM_ShmemTouchFloor(benchmark::State& state) {
  time_fresh_mappings(
      state, "bench-shmem", static_cast<uint64_t>(state.range(0)), [](void*, uint64_t) { return true; },
      touch_every_page);
}

// Large shmem folios allocated so far, all sizes (the per-size THP statistics; 0 where the kernel has none).
uint64_t shmem_large_folios() {
  uint64_t total = 0;
  for (unsigned kib = 8; kib <= 2048; kib *= 2) {
    std::ifstream f("/sys/kernel/mm/transparent_hugepage/hugepages-" + std::to_string(kib) + "kB/stats/shmem_alloc");
    uint64_t n = 0;
    if (f >> n) total += n;
  }
  return total;
}

// Whether a larger page would pay off for GPU RAM: the same touch as BM_ShmemTouchFloor with MADV_HUGEPAGE on the
// memfd mapping, which gets large folios only where the THP settings (read, never changed) allow them for shmem.
// Reports pages_per_s and large_folios, the large shmem folios the touches got.
void BM_ShmemHugeAdviceTouch(benchmark::State& state) {
  const uint64_t folios_before = shmem_large_folios();
  time_fresh_mappings(
      state, "bench-shmem-huge", static_cast<uint64_t>(state.range(0)),
      [](void* map, uint64_t len) { return madvise(map, len, MADV_HUGEPAGE) == 0; }, touch_every_page);
  state.counters["large_folios"] = static_cast<double>(shmem_large_folios() - folios_before);
}

BENCHMARK(BM_GpuRamFirstTouch)->Arg(4096)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ShmemTouchFloor)->Arg(4096)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ShmemHugeAdviceTouch)->Arg(4096)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace nv2pt::bench
