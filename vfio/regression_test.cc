// One regression test per CVE the VFIO stack has had, named after it, run through the UAPI entry points (container
// and device ioctls, pread/pwrite, mmap) over the default machine. The kernel oddities the model departs from have
// theirs in the behaviour tests (docs/kernel-differences.md lists them).
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <thread>

#include "vfio/host.h"
#include "vfio/test_host.h"

namespace nv2pt::vfio {
namespace {

using namespace testing;

uint64_t region_offset(unsigned index) { return uint64_t{index} << 40; }
const uint64_t kConfig = region_offset(VFIO_PCI_CONFIG_REGION_INDEX);

class Regression : public ::testing::Test {
 protected:
  // Group 4 (GPU 0004:04:00.0 and its bridges) in a v2 container, as QEMU sets it up.
  void attach(HostOptions options = {}) {
    options.hardware.hmi_policy = platform::HmiPolicy::kLog;
    host_ = std::move(Host::create(platform::Machine::load_default(), options).value());
    container_ = host_->open_container();
    group_ = host_->open_group(4).value();
    ASSERT_TRUE(group_->set_container(container_));
    ASSERT_TRUE(container_->set_iommu(VFIO_SPAPR_TCE_v2_IOMMU));
  }
  PciDevice* open_gpu() {
    auto d = group_->get_device(as_, "0004:04:00.0");
    EXPECT_TRUE(d);
    return d ? *d : nullptr;
  }
  template <class T>
  Result<long> container_ioctl(unsigned long cmd, T* arg) {
    return container_->ioctl(as_, cmd, reinterpret_cast<unsigned long>(arg));
  }
  Result<long> device_ioctl(PciDevice* d, unsigned long cmd, void* arg) {
    return d->ioctl(as_, cmd, reinterpret_cast<unsigned long>(arg));
  }
  void set_command(PciDevice* d, uint16_t cmd) {
    ASSERT_TRUE(d->write(std::as_bytes(std::span(&cmd, 1)), kConfig + 4));
  }
  void TearDown() override {
    for (PciDevice* d : opened_) group_->device_released(*d);
    if (group_) host_->release_group(*group_);
    container_.reset();
    InvariantReport r = check_invariants(as_, {});
    EXPECT_TRUE(r.ok()) << r.to_string();
    EXPECT_EQ(as_.locked_memory().locked_pages(), 0u);
  }

  mm::AddressSpace as_{process_options(1)};
  std::unique_ptr<Host> host_;
  std::shared_ptr<Container> container_;
  Group* group_ = nullptr;
  std::vector<PciDevice*> opened_;
};

// SET_IRQS with a header and `count` eventfds after it.
struct IrqSet {
  explicit IrqSet(uint32_t index, uint32_t start, uint32_t count, uint32_t flags, size_t fds = 4)
      : buf(sizeof(vfio_irq_set) + 4 * fds) {
    hdr() = {static_cast<uint32_t>(buf.size()), flags, index, start, count};
  }
  vfio_irq_set& hdr() { return *reinterpret_cast<vfio_irq_set*>(buf.data()); }
  int32_t* fds() { return reinterpret_cast<int32_t*>(buf.data() + sizeof(vfio_irq_set)); }
  std::vector<uint8_t> buf;
};

// CVE-2016-9083: start + count was not checked for wrapping, so a huge count passed the vector bound and the
// per-vector loops ran far past the device's vectors.
TEST_F(Regression, CVE_2016_9083_SetIrqsStartPlusCountWrapIsEINVAL) {
  attach();
  PciDevice* gpu = open_gpu();
  opened_.push_back(gpu);
  for (uint32_t index : {VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX}) {
    for (uint32_t flags : {VFIO_IRQ_SET_DATA_NONE, VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_EVENTFD}) {
      for (uint32_t start : {1u, 0x80000000u, UINT32_MAX}) {
        IrqSet set(index, start, UINT32_MAX - start + 1, flags | VFIO_IRQ_SET_ACTION_TRIGGER);
        EXPECT_EQ(device_ioctl(gpu, VFIO_DEVICE_SET_IRQS, set.buf.data()).error(), kEINVAL)
            << "index " << index << " flags " << flags << " start " << start;
      }
    }
  }
}

// CVE-2016-9084: count * element size was computed in 32 bits (and the MSI vector array allocated from it), so
// count = 2^30 + 1 eventfds looked like 4 bytes of data.
TEST_F(Regression, CVE_2016_9084_SetIrqsCountTimesSizeOverflowIsEINVAL) {
  attach();
  PciDevice* gpu = open_gpu();
  opened_.push_back(gpu);
  for (uint32_t index : {VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX}) {
    IrqSet set(index, 0, 0x40000001, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 1);
    set.fds()[0] = -1;
    EXPECT_EQ(device_ioctl(gpu, VFIO_DEVICE_SET_IRQS, set.buf.data()).error(), kEINVAL) << "index " << index;
    IrqSet bools(index, 0, 0x80000001, VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER, 1);
    EXPECT_EQ(device_ioctl(gpu, VFIO_DEVICE_SET_IRQS, bools.buf.data()).error(), kEINVAL) << "index " << index;
  }
  // argsz one byte short of the data it announces.
  IrqSet short_set(VFIO_PCI_INTX_IRQ_INDEX, 0, 1, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 1);
  short_set.hdr().argsz -= 1;
  EXPECT_EQ(device_ioctl(gpu, VFIO_DEVICE_SET_IRQS, short_set.buf.data()).error(), kEINVAL);
}

// CVE-2019-3882: type1 let a user create mappings without bound, exhausting kernel memory; it got
// dma_entry_limit. Here every container counts its live TCEs against SpaprTceIommu::Options::max_live_tces.
TEST_F(Regression, CVE_2019_3882_LiveTcesPerContainerAreBounded) {
  HostOptions options;
  options.iommu.max_live_tces = 16;
  attach(options);
  ClientMemory ram(4 * MiB);
  vfio_iommu_spapr_register_memory reg{24, 0, ram.ua(), ram.size()};
  ASSERT_TRUE(container_ioctl(VFIO_IOMMU_SPAPR_REGISTER_MEMORY, &reg));
  SpaprTceIommu& iommu = *container_->iommu();
  // Default window (4 KiB pages): 16 entries fit, the 17th does not, and a refused call maps nothing.
  vfio_iommu_type1_dma_map map{32, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE, ram.ua(), 0, 16 * 4096};
  ASSERT_TRUE(container_ioctl(VFIO_IOMMU_MAP_DMA, &map));
  EXPECT_EQ(iommu.live_tces(), 16u);
  vfio_iommu_type1_dma_map more{32, VFIO_DMA_MAP_FLAG_READ, ram.ua() + 64 * KiB, 16 * 4096, 2 * 4096};
  EXPECT_EQ(container_ioctl(VFIO_IOMMU_MAP_DMA, &more).error(), kENOSPC);
  EXPECT_EQ(iommu.live_tces(), 16u);
  EXPECT_EQ(iommu.windows()[0].table->get(16), 0u);
  // Replacing live entries needs no new ones.
  map.vaddr = ram.ua() + 64 * KiB;
  EXPECT_TRUE(container_ioctl(VFIO_IOMMU_MAP_DMA, &map));
  EXPECT_EQ(iommu.live_tces(), 16u);
  InvariantReport r = check_invariants(as_, {&iommu});
  EXPECT_TRUE(r.ok()) << r.to_string();
  // Unmapping gives room back.
  vfio_iommu_type1_dma_unmap unmap{24, 0, 0, 2 * 4096};
  ASSERT_TRUE(container_ioctl(VFIO_IOMMU_UNMAP_DMA, &unmap));
  EXPECT_EQ(iommu.live_tces(), 14u);
  EXPECT_TRUE(container_ioctl(VFIO_IOMMU_MAP_DMA, &more));
  EXPECT_EQ(iommu.live_tces(), 16u);
  r = check_invariants(as_, {&iommu});
  EXPECT_TRUE(r.ok()) << r.to_string();
}

// The default bound leaves room for what QEMU maps: a 16 GiB guest in a 64 KiB DDW window (262144 TCEs) plus
// the 128 GiB GPU-RAM window of each of the six GPUs.
TEST_F(Regression, CVE_2019_3882_DefaultBoundFitsTheWholeMachine) {
  const SpaprTceIommu::Options defaults;
  const uint64_t guest = (16 * GiB) >> 16, gpu_ram = (128 * GiB) >> 16;
  EXPECT_GE(defaults.max_live_tces, guest + 6 * gpu_ram);
}

// Found by the UAPI fuzzer: the container's ioctl dispatch copied whole structs from the user's pointer where the
// kernel copies only minsz (GET_INFO: 16 bytes of 32; EEH_PE_OP: 12 of 40), so a client handing over exactly argsz
// bytes at the end of its memory was read past. Here the structs end at a PROT_NONE page.
TEST_F(Regression, ContainerIoctlsReadNoMoreThanArgszCovers) {
  attach();
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* p = mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  ASSERT_EQ(mprotect(static_cast<uint8_t*>(p) + page, page, PROT_NONE), 0);
  uint8_t* const end = static_cast<uint8_t*>(p) + page;
  const uint32_t info_head[4] = {16, 0, 0, 0};  // argsz, flags, dma32 start, dma32 size
  uint8_t* info = end - sizeof(info_head);
  std::memcpy(info, info_head, sizeof(info_head));
  ASSERT_TRUE(container_ioctl(VFIO_IOMMU_SPAPR_TCE_GET_INFO, info));
  uint32_t dma32_size = 0;
  std::memcpy(&dma32_size, info + 12, 4);
  EXPECT_EQ(dma32_size, 2 * GiB);
  const uint32_t eeh[3] = {12, 0, VFIO_EEH_PE_GET_STATE};
  uint8_t* op = end - sizeof(eeh);
  std::memcpy(op, eeh, sizeof(eeh));
  EXPECT_TRUE(container_ioctl(VFIO_EEH_PE_OP, op));
  munmap(p, 2 * page);
}

// CVE-2020-12888: with memory decode off, user access to the BARs must not reach the device. pread/pwrite give
// EIO (DeviceTest.BarAccessWithMemoryDecodeOffNeverReachesTheDevice); an mmap of a BAR raises SIGBUS, as the
// kernel's zapped VMAs do, and reaches the device again once decode is back on.
TEST_F(Regression, CVE_2020_12888_BarMmapWithMemoryDecodeOffRaisesSigbus) {
  attach();
  PciDevice* gpu = open_gpu();
  opened_.push_back(gpu);
  set_command(gpu, 0x2);
  vfio_region_info bar0{sizeof(bar0)};
  bar0.index = VFIO_PCI_BAR0_REGION_INDEX;
  ASSERT_TRUE(device_ioctl(gpu, VFIO_DEVICE_GET_REGION_INFO, &bar0));
  ASSERT_TRUE(bar0.flags & VFIO_REGION_INFO_FLAG_MMAP);
  auto p = gpu->mmap(as_, nullptr, bar0.size, PROT_READ | PROT_WRITE, MAP_SHARED, bar0.offset);
  ASSERT_TRUE(p);
  auto* bar = static_cast<volatile uint32_t*>(*p);
  uint32_t through_pread = 0;
  ASSERT_TRUE(gpu->read(std::as_writable_bytes(std::span(&through_pread, 1)), bar0.offset));
  EXPECT_EQ(bar[0], through_pread);  // decode on: the mapping is the device's BAR

  // A child turns decode off and touches the BAR: it must die of SIGBUS (the child's copy of the model zaps the
  // child's mapping; the parent's stays).
  auto touch_in_child = [&](uint16_t command) {
    const pid_t pid = fork();
    if (pid == 0) {
      uint16_t cmd = command;
      if (!gpu->write(std::as_bytes(std::span(&cmd, 1)), kConfig + 4)) _exit(2);
      const uint32_t v = bar[0];
      _exit(v == through_pread ? 0 : 3);
    }
    int status = 0;
    EXPECT_EQ(waitpid(pid, &status, 0), pid);
    return status;
  };
  int status = touch_in_child(0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "exit status " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGBUS);
  status = touch_in_child(0x2);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  // Off and on again in this process: the same pointer reaches the device again.
  set_command(gpu, 0);
  set_command(gpu, 0x2);
  EXPECT_EQ(bar[0], through_pread);
  // A mapping made while decode is off is zapped from the start, and a reset turns decode off.
  set_command(gpu, 0);
  auto late = gpu->mmap(as_, nullptr, bar0.size, PROT_READ, MAP_SHARED, bar0.offset);
  ASSERT_TRUE(late);
  set_command(gpu, 0x2);
  EXPECT_EQ(static_cast<volatile uint32_t*>(*late)[0], through_pread);
  ASSERT_TRUE(device_ioctl(gpu, VFIO_DEVICE_RESET, nullptr));
  const pid_t pid = fork();
  if (pid == 0) {
    (void)bar[0];
    _exit(0);
  }
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS);
  gpu->munmap(*p, bar0.size);
  gpu->munmap(*late, bar0.size);
  munmap(*p, bar0.size);
  munmap(*late, bar0.size);
}

// Found with the UAPI fuzzer's poisoned argument buffer: an INTx MASK/UNMASK with DATA_BOOL and count 0 read its
// BOOL past argsz. The kernel takes exactly vector 0 (start 0, count 1) for these and so does the model now.
TEST_F(Regression, IntxMaskWithCountZeroReadsNothingPastArgsz) {
  attach();
  PciDevice* gpu = open_gpu();
  opened_.push_back(gpu);
  IrqSet trigger(VFIO_PCI_INTX_IRQ_INDEX, 0, 1, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 1);
  trigger.fds()[0] = eventfd(0, EFD_CLOEXEC);
  ASSERT_TRUE(device_ioctl(gpu, VFIO_DEVICE_SET_IRQS, trigger.buf.data()));
  ::close(trigger.fds()[0]);
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* p = mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  ASSERT_EQ(mprotect(static_cast<uint8_t*>(p) + page, page, PROT_NONE), 0);
  for (uint32_t action : {VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_UNMASK}) {
    const vfio_irq_set set{sizeof(vfio_irq_set), VFIO_IRQ_SET_DATA_BOOL | action, VFIO_PCI_INTX_IRQ_INDEX, 0, 0};
    uint8_t* at = static_cast<uint8_t*>(p) + page - sizeof(set);  // the header ends where the memory does
    std::memcpy(at, &set, sizeof(set));
    EXPECT_EQ(device_ioctl(gpu, VFIO_DEVICE_SET_IRQS, at).error(), kEINVAL);
  }
  IrqSet mask(VFIO_PCI_INTX_IRQ_INDEX, 0, 1, VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_MASK, 1);
  mask.buf[sizeof(vfio_irq_set)] = 1;
  EXPECT_TRUE(device_ioctl(gpu, VFIO_DEVICE_SET_IRQS, mask.buf.data()));
  munmap(p, 2 * page);
}

// Found while writing the fuzzer: device release dropped the records of mappings the client still held, so the
// GPU-RAM fault service kept a stale mapping, the pinner kept stale special ranges and the client's munmap went
// unheard. Release now revokes them: SIGBUS on access, unpinnable, forgotten at the client's munmap.
TEST_F(Regression, DeviceReleaseWhileMappedRevokesTheMappings) {
  attach();
  PciDevice* gpu = open_gpu();
  set_command(gpu, 0x2);
  vfio_region_info bar0{sizeof(bar0)}, nv2{sizeof(nv2)};
  bar0.index = VFIO_PCI_BAR0_REGION_INDEX;
  nv2.index = 9;
  ASSERT_TRUE(device_ioctl(gpu, VFIO_DEVICE_GET_REGION_INFO, &bar0));
  ASSERT_TRUE(device_ioctl(gpu, VFIO_DEVICE_GET_REGION_INFO, &nv2));
  void* bar = gpu->mmap(as_, nullptr, bar0.size, PROT_READ, MAP_SHARED, bar0.offset).value();
  void* ram = gpu->mmap(as_, nullptr, nv2.size, PROT_READ | PROT_WRITE, MAP_SHARED, nv2.offset).value();
  group_->device_released(*gpu);
  EXPECT_TRUE(gpu->owns_mapping(bar, 1));
  for (void* p : {bar, ram}) {
    const pid_t pid = fork();
    if (pid == 0) {
      (void)*static_cast<volatile uint8_t*>(p);
      _exit(0);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS) << "status " << status;
    const uint64_t ua = (reinterpret_cast<uint64_t>(p) + 64 * KiB - 1) & ~(64 * KiB - 1);  // inside either
    vfio_iommu_spapr_register_memory reg{24, 0, ua, 64 * KiB};
    EXPECT_EQ(container_ioctl(VFIO_IOMMU_SPAPR_REGISTER_MEMORY, &reg).error(), kEFAULT);
  }
  gpu->munmap(bar, bar0.size);
  gpu->munmap(ram, nv2.size);
  munmap(bar, bar0.size);
  munmap(ram, nv2.size);
  EXPECT_FALSE(gpu->owns_mapping(bar, 1));
  EXPECT_FALSE(as_.pinner().is_special(reinterpret_cast<uint64_t>(bar), bar0.size));
  EXPECT_FALSE(as_.pinner().is_special(reinterpret_cast<uint64_t>(ram), nv2.size));
}

// CVE-2024-26810: INTx mask/unmask raced with SET_IRQS changing the trigger eventfd, so the mask path could use
// a trigger being freed. Here the device's IRQ state is changed and used only under its lock: masking,
// unmasking, swapping and disabling the trigger and firing it run concurrently without a use of a stale eventfd
// (TSan/ASan builds check the races), and no eventfd reference is leaked.
TEST_F(Regression, CVE_2024_26810_ConcurrentIntxMaskUnmaskAndTriggerChanges) {
  attach();
  PciDevice* gpu = open_gpu();
  opened_.push_back(gpu);
  auto open_fds = [] {
    int n = 0;
    for (int fd = 0; fd < 4096; ++fd) n += fcntl(fd, F_GETFD) != -1;
    return n;
  };
  const int fds_before = open_fds();
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  auto run = [&](auto&& step) {
    return std::thread([&, step] {
      while (!stop.load(std::memory_order_relaxed)) {
        if (!step()) failures.fetch_add(1);
      }
    });
  };
  std::vector<std::thread> threads;
  for (uint32_t action : {VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_UNMASK}) {
    threads.push_back(run([&, action] {
      vfio_irq_set set{sizeof(set), VFIO_IRQ_SET_DATA_NONE | action, VFIO_PCI_INTX_IRQ_INDEX, 0, 1};
      return device_ioctl(gpu, VFIO_DEVICE_SET_IRQS, &set).has_value();
    }));
  }
  threads.push_back(run([&] {  // new trigger, then disable
    const int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    IrqSet set(VFIO_PCI_INTX_IRQ_INDEX, 0, 1, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 1);
    set.fds()[0] = efd;
    bool ok = device_ioctl(gpu, VFIO_DEVICE_SET_IRQS, set.buf.data()).has_value();
    ::close(efd);  // the device holds its own reference
    vfio_irq_set off{sizeof(off), VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_INTX_IRQ_INDEX, 0, 0};
    return ok && device_ioctl(gpu, VFIO_DEVICE_SET_IRQS, &off).has_value();
  }));
  threads.push_back(run([&] {  // loopback fire
    vfio_irq_set fire{sizeof(fire), VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_INTX_IRQ_INDEX, 0,
                      1};
    return device_ioctl(gpu, VFIO_DEVICE_SET_IRQS, &fire).has_value();
  }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  stop = true;
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  vfio_irq_set off{sizeof(off), VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_INTX_IRQ_INDEX, 0, 0};
  ASSERT_TRUE(device_ioctl(gpu, VFIO_DEVICE_SET_IRQS, &off));
  EXPECT_EQ(open_fds(), fds_before);
}

}  // namespace
}  // namespace nv2pt::vfio
