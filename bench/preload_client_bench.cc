// Figures 1 and 2 through the interposer: a VFIO client of its own, written against the real UAPI and linked with
// nothing of the model, run under LD_PRELOAD=libnv2pt_preload.so (bench/run.sh does that).
//   - BM_RealIoctl: the reference, a real ioctl syscall measured in the same process (FIONREAD on an eventfd, an
//     fd the interposer does not own, so its wrapper adds one fd-table load before the syscall).
//   - BM_InterposedCheckExtension: VFIO_CHECK_EXTENSION on an emulated container fd, served in-process.
//   - BM_InterposedMapDma / BM_InterposedUnmapDma: MAP/UNMAP of 1 GiB through ioctl() on the container fd.
// Without the preload /dev/vfio/vfio is the real one (or absent): the interposed benchmarks are skipped.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>

#include "bench/timing.h"  // clocks only: the client links nothing of the model

namespace {

using nv2pt::bench::Clock;
using nv2pt::bench::seconds;

constexpr uint64_t kGiB = 1ull << 30;

// Whether /dev/vfio/vfio is ours: the interposer answers sPAPR TCE v2; a real x86 kernel does not.
int open_container() {
  const int fd = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
  if (fd < 0) return -1;
  if (ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_v2_IOMMU) != 1) {
    close(fd);
    return -1;
  }
  return fd;
}

void BM_RealIoctl(benchmark::State& state) {
  const int fd = eventfd(0, EFD_CLOEXEC);
  int n = 0;
  for (auto _ : state) benchmark::DoNotOptimize(ioctl(fd, FIONREAD, &n));
  close(fd);
}

void BM_InterposedCheckExtension(benchmark::State& state) {
  const int fd = open_container();
  if (fd < 0) return state.SkipWithError("/dev/vfio/vfio is not emulated (run under LD_PRELOAD)");
  for (auto _ : state) {
    if (ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_v2_IOMMU) != 1) return state.SkipWithError("wrong answer");
  }
  close(fd);
}

// Group 4 in a v2 container with one 2-level window over 2^46 at bus 0, 1 GiB of memory registered: what QEMU's
// realize and first reset leave behind, then the guest's MAP/UNMAP.
struct Client {
  int container = -1, group = -1;
  void* ram = nullptr;
  void* raw = nullptr;
  uint64_t raw_size = 0;
  std::string error;

  explicit Client(unsigned page_shift) {
    container = open_container();
    if (container < 0) {
      fail("/dev/vfio/vfio is not emulated (run under LD_PRELOAD)");
      return;
    }
    group = open("/dev/vfio/4", O_RDWR | O_CLOEXEC);
    if (group < 0) {
      fail("open /dev/vfio/4");
      return;
    }
    if (ioctl(group, VFIO_GROUP_SET_CONTAINER, &container) != 0) {
      fail("SET_CONTAINER");
      return;
    }
    if (ioctl(container, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_v2_IOMMU) != 0) {
      fail("SET_IOMMU");
      return;
    }
    vfio_iommu_spapr_tce_remove remove{sizeof(remove), 0, 0};
    if (ioctl(container, VFIO_IOMMU_SPAPR_TCE_REMOVE, &remove) != 0) {
      fail("TCE_REMOVE");
      return;
    }
    vfio_iommu_spapr_tce_create create{sizeof(create), 0, page_shift, 0, 1ull << 46, 2, 0, 0};
    if (ioctl(container, VFIO_IOMMU_SPAPR_TCE_CREATE, &create) != 0) {
      fail("TCE_CREATE");
      return;
    }
    // 64 KiB aligned, the host page of the model.
    raw_size = kGiB + (64 << 10);
    raw = mmap(nullptr, raw_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) {
      raw = nullptr;
      fail("mmap");
      return;
    }
    ram = reinterpret_cast<void*>((reinterpret_cast<uint64_t>(raw) + 0xffff) & ~0xffffull);
    vfio_iommu_spapr_register_memory reg{sizeof(reg), 0, reinterpret_cast<uint64_t>(ram), kGiB};
    if (ioctl(container, VFIO_IOMMU_SPAPR_REGISTER_MEMORY, &reg) != 0) {
      fail("REGISTER_MEMORY");
      return;
    }
  }
  ~Client() {
    // Closing the container releases the window and the registration, closing the group frees group 4.
    if (group >= 0) close(group);
    if (container >= 0) close(container);
    if (raw) munmap(raw, raw_size);
  }
  void fail(const char* what) { error = std::string(what) + ": " + std::strerror(errno); }

  int map() {
    vfio_iommu_type1_dma_map m{sizeof(m), VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
                               reinterpret_cast<uint64_t>(ram), 0, kGiB};
    return ioctl(container, VFIO_IOMMU_MAP_DMA, &m);
  }
  int unmap() {
    vfio_iommu_type1_dma_unmap u{sizeof(u), 0, 0, kGiB};
    return ioctl(container, VFIO_IOMMU_UNMAP_DMA, &u);
  }
};

// One container per page shift, one group: the second page shift gets group 4 once the first is done with it.
Client& client(unsigned page_shift) {
  static std::map<unsigned, std::unique_ptr<Client>> clients;
  for (auto& [shift, c] : clients)
    if (shift != page_shift) c.reset();
  auto& c = clients[page_shift];
  if (!c) c = std::make_unique<Client>(page_shift);
  return *c;
}

void BM_InterposedMapDma(benchmark::State& state) {
  Client& c = client(static_cast<unsigned>(state.range(0)));
  if (!c.error.empty()) return state.SkipWithError(c.error.c_str());
  for (auto _ : state) {
    const auto t0 = Clock::now();
    const int rc = c.map();
    const auto t1 = Clock::now();
    if (rc != 0) return state.SkipWithError("MAP_DMA failed");
    state.SetIterationTime(seconds(t0, t1));
    c.unmap();
  }
  state.counters["tces"] = static_cast<double>(kGiB >> state.range(0));
}

void BM_InterposedUnmapDma(benchmark::State& state) {
  Client& c = client(static_cast<unsigned>(state.range(0)));
  if (!c.error.empty()) return state.SkipWithError(c.error.c_str());
  for (auto _ : state) {
    if (c.map() != 0) return state.SkipWithError("MAP_DMA failed");
    const auto t0 = Clock::now();
    const int rc = c.unmap();
    const auto t1 = Clock::now();
    if (rc != 0) return state.SkipWithError("UNMAP_DMA failed");
    state.SetIterationTime(seconds(t0, t1));
  }
  state.counters["tces"] = static_cast<double>(kGiB >> state.range(0));
}

BENCHMARK(BM_RealIoctl);
BENCHMARK(BM_InterposedCheckExtension);
// Grouped by page shift: switching re-registers (re-pins) the memory.
BENCHMARK(BM_InterposedMapDma)->Arg(16)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_InterposedUnmapDma)->Arg(16)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_InterposedMapDma)->Arg(12)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_InterposedUnmapDma)->Arg(12)->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
