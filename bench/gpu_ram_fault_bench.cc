// Figure 4: GPU RAM first-touch fault service through userfaultfd. platform::Hardware over the default machine,
// the GPU's NVLinks trained through the NPU2 bridges' procedure interface (config writes, as the guest driver does
// through VFIO), its RAM mapped, then one write per 64 KiB page: each write is a userfaultfd fault that the service
// thread checks against the rule and populates. Reports pages/s and the per-touch latency p50/p99.
#include <benchmark/benchmark.h>
#include <sys/mman.h>

#include <chrono>
#include <vector>

#include "bench/bench_util.h"
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

void BM_GpuRamFirstTouch(benchmark::State& state) {
  const uint64_t pages = static_cast<uint64_t>(state.range(0));
  const uint64_t page = 64 * KiB;
  const platform::Machine machine = platform::Machine::load_default();
  auto hw = platform::Hardware::create(machine);
  if (!hw) return state.SkipWithError("hardware");
  const platform::PciAddress gpu = platform::PciAddress::parse("0004:04:00.0").value();
  if (!train_links(**hw, machine, gpu)) return state.SkipWithError("link training failed");
  platform::GpuRam* ram = (*hw)->gpu_ram(gpu);
  auto mapped = ram->map(nullptr, 0, pages * page, PROT_READ | PROT_WRITE);
  if (!mapped) return state.SkipWithError("GPU RAM map failed");
  auto* bytes = static_cast<volatile uint8_t*>(*mapped);

  std::vector<double> latency_ns;
  latency_ns.reserve(pages * 8);
  double total_s = 0;
  using Clock = std::chrono::steady_clock;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    auto prev = t0;
    for (uint64_t i = 0; i < pages; ++i) {
      bytes[i * page] = 1;  // the fault: checked, populated, woken
      const auto now = Clock::now();
      latency_ns.push_back(std::chrono::duration<double, std::nano>(now - prev).count());
      prev = now;
    }
    const double s = std::chrono::duration<double>(prev - t0).count();
    state.SetIterationTime(s);
    total_s += s;
    state.PauseTiming();
    if (ram->populated_pages() != pages) return state.SkipWithError("pages not populated");
    ram->discard();  // every page faults again next time
    state.ResumeTiming();
  }
  if ((*hw)->hmi_log().size() != 0) return state.SkipWithError("HMI on a trained link");
  munmap(*mapped, pages * page);
  ram->unmap(*mapped, pages * page);
  const double touched = static_cast<double>(pages) * static_cast<double>(state.iterations());
  state.counters["pages_per_s"] = touched / total_s;
  state.counters["p50_ns"] = percentile(latency_ns, 50);
  state.counters["p99_ns"] = percentile(latency_ns, 99);
  state.counters["pages"] = static_cast<double>(pages);
}

BENCHMARK(BM_GpuRamFirstTouch)->Arg(4096)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace nv2pt::bench
