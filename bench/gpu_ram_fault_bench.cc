// Figure 4: GPU RAM first-touch fault service through userfaultfd. platform::Hardware over the default machine,
// the GPU's NVLinks trained through the NPU2 bridges' procedure interface (config writes, as the guest driver does
// through VFIO), its RAM mapped, then one write per 64 KiB page: each write is a userfaultfd fault that the service
// thread checks against the rule and populates. Reports pages/s and the per-touch latency p50/p99.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include <sys/eventfd.h>

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
  for (auto _ : state) {
    const auto t0 = Clock::now();
    auto prev = t0;
    for (uint64_t i = 0; i < pages; ++i) {
      bytes[i * page] = 1;  // the fault: checked, populated, woken
      const auto now = Clock::now();
      latency_ns.push_back(std::chrono::duration<double, std::nano>(now - prev).count());
      prev = now;
    }
    const double s = seconds(t0, prev);
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

// Times `touch(bytes)` over a fresh shared memfd mapping of `pages` 64 KiB pages each iteration (so every page
// faults), after `arm(map)` prepared it untimed (false: the mapping is unusable). Reports pages_per_s.
template <class Arm, class Touch>
void time_fresh_mappings(benchmark::State& state, const char* name, uint64_t pages, Arm arm, Touch touch) {
  const uint64_t len = pages * 64 * KiB;
  double total_s = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const int memfd = memfd_create(name, MFD_CLOEXEC);
    void* map = memfd < 0 || ftruncate(memfd, static_cast<off_t>(len)) != 0
                    ? MAP_FAILED
                    : mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
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

// The machine's floor for the same mechanism: a shmem memfd mapping, a userfaultfd service thread that does
// nothing but zero-fill the 64 KiB page and wake the toucher. Whatever the model adds comes on top of this.
void BM_UffdFloor(benchmark::State& state) {
  const uint64_t pages = static_cast<uint64_t>(state.range(0));
  const uint64_t page = 64 * KiB;
  const int uffd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  uffdio_api api{UFFD_API, 0, 0};
  if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api) != 0) return state.SkipWithError("userfaultfd");
  const int stop = eventfd(0, EFD_CLOEXEC);
  std::atomic<uint64_t> base{0};  // pages are 64 KiB from the start of the mapping, which mmap aligns to 4 KiB only
  std::thread server([&] {
    pollfd fds[2] = {{uffd, POLLIN, 0}, {stop, POLLIN, 0}};
    for (;;) {
      if (poll(fds, 2, -1) < 0 || fds[1].revents) return;
      uffd_msg msg;
      if (read(uffd, &msg, sizeof msg) != sizeof msg || msg.event != UFFD_EVENT_PAGEFAULT) continue;
      uffdio_zeropage zp{};
      const uint64_t b = base.load(std::memory_order_acquire);
      zp.range.start = b + ((msg.arg.pagefault.address - b) & ~(page - 1));
      zp.range.len = page;
      if (ioctl(uffd, UFFDIO_ZEROPAGE, &zp) != 0) {
        // Already there (EEXIST) or partly done: the toucher still has to be woken, as the model does.
        uffdio_range wake{zp.range.start, page};
        (void)ioctl(uffd, UFFDIO_WAKE, &wake);
      }
    }
  });
  time_fresh_mappings(
      state, "bench-uffd", pages,
      [&](void* map, uint64_t len) {
        uffdio_register reg{{reinterpret_cast<uint64_t>(map), len}, UFFDIO_REGISTER_MODE_MISSING, 0};
        if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) return false;
        base.store(reinterpret_cast<uint64_t>(map), std::memory_order_release);
        return true;
      },
      [&](volatile uint8_t* bytes, uint64_t) {
        for (uint64_t i = 0; i < pages; ++i) bytes[i * page] = 1;
      });
  uint64_t one = 1;
  (void)!write(stop, &one, sizeof one);
  server.join();
  close(uffd);
  close(stop);
}

// What the kernel itself takes to back the same bytes: a fresh shmem memfd mapping, no userfaultfd, every 4 KiB
// page of each 64 KiB page written, so each 64 KiB page costs sixteen ordinary shmem faults. The model's one
// userfaultfd round trip per 64 KiB page (one UFFDIO_ZEROPAGE for all sixteen) is to be compared with this.
void BM_ShmemTouchFloor(benchmark::State& state) {
  const auto small = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  time_fresh_mappings(
      state, "bench-shmem", static_cast<uint64_t>(state.range(0)), [](void*, uint64_t) { return true; },
      [&](volatile uint8_t* bytes, uint64_t len) {
        for (uint64_t off = 0; off < len; off += small) bytes[off] = 1;
      });
}

BENCHMARK(BM_GpuRamFirstTouch)->Arg(4096)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_UffdFloor)->Arg(4096)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ShmemTouchFloor)->Arg(4096)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace nv2pt::bench
