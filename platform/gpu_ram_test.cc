#include "platform/gpu_ram.h"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <optional>
#include <thread>
#include <vector>

namespace nv2pt::platform {
namespace {

constexpr uint64_t k64K = 0x10000;
constexpr uint64_t kWindowBase = 0x0400'0000'0000;
constexpr uint64_t kWindow = 64 * k64K;  // 4 MiB window
constexpr uint64_t kReal = 32 * k64K;    // half of it is real RAM

class GpuRamTest : public ::testing::Test {
 protected:
  std::unique_ptr<GpuRam> make(HmiPolicy policy) {
    GpuRam::Config c;
    c.gpu = PciAddress::parse("0004:04:00.0").value();
    c.window_base = kWindowBase;
    c.window_size = kWindow;
    c.real_size = kReal;
    c.policy = policy;
    return GpuRam::create(c, log, [this] { return trained.load(); }).value();
  }
  volatile uint8_t* map_all(GpuRam& ram) {
    auto m = ram.map(nullptr, 0, kWindow, PROT_READ | PROT_WRITE);
    EXPECT_TRUE(m.has_value());
    mapped.push_back(*m);
    return static_cast<volatile uint8_t*>(*m);
  }
  void TearDown() override {
    for (void* m : mapped) munmap(m, kWindow);
  }

  HmiLog log;
  std::atomic<bool> trained{true};
  std::vector<void*> mapped;
};

TEST_F(GpuRamTest, FaultOnTrainedRealRamPopulatesZerosAndWritesPersist) {
  auto ram = make(HmiPolicy::kFatal);
  volatile uint8_t* p = map_all(*ram);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % k64K, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % kWindow, 0u);  // window-size alignment when the VA space allows
  EXPECT_EQ(ram->populated_pages(), 0u);  // never eager
  EXPECT_EQ(p[5 * k64K + 3], 0);
  p[5 * k64K + 3] = 0xab;
  p[7 * k64K] = 0xcd;
  EXPECT_EQ(ram->populated_pages(), 2u);
  std::byte b{};
  ASSERT_TRUE(ram->read(5 * k64K + 3, std::span(&b, 1)));
  EXPECT_EQ(b, std::byte{0xab});
  // The whole 64 KiB page came in at once: its other 4 KiB pieces need no more service.
  EXPECT_EQ(p[5 * k64K + k64K - 1], 0);
  EXPECT_EQ(ram->populated_pages(), 2u);
  EXPECT_EQ(log.count(), 0u);
}

TEST_F(GpuRamTest, WritesThroughWriteAreSeenByTheMapping) {
  auto ram = make(HmiPolicy::kFatal);
  const uint32_t v = 0x11223344;
  ASSERT_TRUE(ram->write(3 * k64K + 8, std::as_bytes(std::span(&v, 1))));
  EXPECT_EQ(ram->populated_pages(), 1u);
  volatile uint8_t* p = map_all(*ram);
  uint32_t seen;
  std::memcpy(&seen, const_cast<uint8_t*>(p + 3 * k64K + 8), 4);
  EXPECT_EQ(seen, v);
  EXPECT_EQ(p[3 * k64K + 0x2000], 0);  // rest of that page, and a page partly in the cache, resolve fine
  EXPECT_EQ(ram->populated_pages(), 1u);
}

TEST_F(GpuRamTest, UntrainedTouchIsAnHmiAndTheLogPolicyGoesOn) {
  trained = false;
  auto ram = make(HmiPolicy::kLog);
  volatile uint8_t* p = map_all(*ram);
  EXPECT_EQ(p[2 * k64K + 16], 0);
  ASSERT_EQ(log.count(), 1u);
  const Hmi hmi = log.entries()[0];
  EXPECT_EQ(hmi.cause, HmiCause::kUntrainedLink);
  EXPECT_EQ(hmi.hpa, kWindowBase + 2 * k64K + 16);
  EXPECT_EQ(hmi.gpu.to_string(), "0004:04:00.0");
  p[2 * k64K + 16] = 1;  // populated now: no second HMI
  EXPECT_EQ(log.count(), 1u);
}

TEST_F(GpuRamTest, TouchBeyondRealRamIsAnHmi) {
  auto ram = make(HmiPolicy::kLog);
  volatile uint8_t* p = map_all(*ram);
  EXPECT_EQ(p[kReal + 5], 0);
  ASSERT_EQ(log.count(), 1u);
  EXPECT_EQ(log.entries()[0].cause, HmiCause::kBeyondRealRam);
  EXPECT_EQ(log.entries()[0].hpa, kWindowBase + kReal + 5);
  EXPECT_EQ(p[kReal - 1], 0);  // the last real page is fine
  EXPECT_EQ(log.count(), 1u);
}

// The fatal policy kills the touching thread's process with SIGBUS. The child reports its HMI count from its
// SIGBUS handler, then dies of the signal.
int g_report_fd = -1;
HmiLog* g_child_log = nullptr;
std::atomic<bool> g_child_trained{false};  // the child's links; a touch body may change them

void report_and_die(int) {
  const uint64_t n = g_child_log ? g_child_log->count() : 0;
  (void)!write(g_report_fd, &n, sizeof n);
  signal(SIGBUS, SIG_DFL);
  raise(SIGBUS);
}

// With `expected_hook_hpa`, the log's fatal hook writes the HMI's address into the pipe too: before the signal.
template <class Touch>
void expect_sigbus_in_child(uint64_t expected_hmis, bool untrained, Touch touch,
                            std::optional<uint64_t> expected_hook_hpa = std::nullopt) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    g_report_fd = fds[1];
    static HmiLog log;
    g_child_log = &log;
    g_child_trained = !untrained;
    GpuRam::Config c;
    c.gpu = PciAddress::parse("0004:04:00.0").value();
    c.window_base = kWindowBase;
    c.window_size = kWindow;
    c.real_size = kReal;
    c.policy = HmiPolicy::kFatal;
    auto ram = GpuRam::create(c, log, [] { return g_child_trained.load(); });
    if (!ram) _exit(3);
    if (expected_hook_hpa) {
      log.set_fatal_hook([](const Hmi& h) {
        const uint64_t hpa = h.hpa;
        (void)!write(g_report_fd, &hpa, sizeof hpa);
      });
    }
    signal(SIGBUS, report_and_die);
    touch(**ram);
    _exit(0);  // not reached if the HMI was fatal
  }
  close(fds[1]);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  uint64_t hook_hpa = 0;
  const ssize_t hook_n = expected_hook_hpa ? read(fds[0], &hook_hpa, sizeof hook_hpa) : 0;
  uint64_t reported = ~uint64_t{0};
  const ssize_t n = read(fds[0], &reported, sizeof reported);
  close(fds[0]);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exit status " << status;
  EXPECT_EQ(WTERMSIG(status), SIGBUS);
  ASSERT_EQ(n, static_cast<ssize_t>(sizeof reported));
  EXPECT_EQ(reported, expected_hmis);
  if (expected_hook_hpa) {
    ASSERT_EQ(hook_n, static_cast<ssize_t>(sizeof hook_hpa)) << "the fatal hook did not run before the signal";
    EXPECT_EQ(hook_hpa, *expected_hook_hpa);
  }
}

TEST(GpuRamFatal, UntrainedTouchRaisesSigbusInTheTouchingThread) {
  expect_sigbus_in_child(1, /*untrained=*/true, [](GpuRam& ram) {
    auto m = ram.map(nullptr, 0, kWindow, PROT_READ | PROT_WRITE);
    if (!m) _exit(4);
    volatile uint8_t* p = static_cast<volatile uint8_t*>(*m);
    (void)p[k64K];
  });
}

// The interposer writes its report there: the hook runs after the HMI is recorded, before the signal.
TEST(GpuRamFatal, FatalHookRunsBeforeTheSignal) {
  expect_sigbus_in_child(1, /*untrained=*/true, [](GpuRam& ram) {
    auto m = ram.map(nullptr, 0, kWindow, PROT_READ | PROT_WRITE);
    if (!m) _exit(4);
    volatile uint8_t* p = static_cast<volatile uint8_t*>(*m);
    (void)p[k64K];
  }, kWindowBase + k64K);
  expect_sigbus_in_child(1, /*untrained=*/false, [](GpuRam& ram) {
    std::byte b[4];
    (void)ram.read(kReal, b);
  }, kWindowBase + kReal);
}

TEST(GpuRamFatal, ReadBeyondRealRamThroughReadRaisesSigbus) {
  expect_sigbus_in_child(1, /*untrained=*/false, [](GpuRam& ram) {
    std::byte b[4];
    (void)ram.read(kReal, b);
  });
}

TEST_F(GpuRamTest, ReadWriteFollowTheRuleUnderTheLogPolicy) {
  auto ram = make(HmiPolicy::kLog);
  const uint64_t v = 0x0102030405060708;
  // Beyond real RAM: the write is dropped, the read sees zeros, each one an HMI.
  ASSERT_TRUE(ram->write(kReal + 8, std::as_bytes(std::span(&v, 1))));
  uint64_t back = 1;
  ASSERT_TRUE(ram->read(kReal + 8, std::as_writable_bytes(std::span(&back, 1))));
  EXPECT_EQ(back, 0u);
  EXPECT_EQ(ram->populated_pages(), 0u);
  ASSERT_EQ(log.count(), 2u);
  EXPECT_EQ(log.entries()[1].cause, HmiCause::kBeyondRealRam);
  // Untrained but real: recorded, and the access goes on.
  trained = false;
  ASSERT_TRUE(ram->write(8, std::as_bytes(std::span(&v, 1))));
  ASSERT_TRUE(ram->read(8, std::as_writable_bytes(std::span(&back, 1))));
  EXPECT_EQ(back, v);
  ASSERT_EQ(log.count(), 4u);
  EXPECT_EQ(log.entries()[3].cause, HmiCause::kUntrainedLink);
  // A span crossing into the missing RAM: real part kept, rest zero.
  trained = true;
  std::vector<std::byte> buf(2 * k64K, std::byte{0x5a});
  ASSERT_TRUE(ram->write(kReal - k64K, buf));
  ASSERT_TRUE(ram->read(kReal - k64K, buf));
  EXPECT_EQ(buf[0], std::byte{0x5a});
  EXPECT_EQ(buf[k64K], std::byte{0});
  // Past the window.
  EXPECT_EQ(ram->read(kWindow - 4, std::as_writable_bytes(std::span(&back, 1))).error(), kEINVAL);
  EXPECT_EQ(ram->write(kWindow, std::as_bytes(std::span(&v, 1))).error(), kEINVAL);
}

TEST_F(GpuRamTest, DiscardEmptiesTheMemoryAndTheMappingsFaultAgain) {
  auto ram = make(HmiPolicy::kLog);
  volatile uint8_t* p = map_all(*ram);
  p[k64K] = 7;
  EXPECT_EQ(ram->populated_pages(), 1u);
  ram->discard();
  EXPECT_EQ(ram->populated_pages(), 0u);
  trained = false;  // after a reset the link is down: the next touch goes through the service again
  EXPECT_EQ(p[k64K], 0);
  EXPECT_EQ(log.count(), 1u);
  EXPECT_EQ(ram->populated_pages(), 1u);
}

TEST_F(GpuRamTest, MapChecksTheRangeAndHonoursAFixedAddress) {
  auto ram = make(HmiPolicy::kLog);
  EXPECT_EQ(ram->map(nullptr, kWindow, k64K, PROT_READ).error(), kEINVAL);
  EXPECT_EQ(ram->map(nullptr, kWindow - k64K, 2 * k64K, PROT_READ).error(), kEINVAL);
  EXPECT_EQ(ram->map(nullptr, 0, 0, PROT_READ).error(), kEINVAL);
  void* reservation = mmap(nullptr, 4 * k64K, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(reservation, MAP_FAILED);
  auto m = ram->map(reservation, 4 * k64K, 4 * k64K, PROT_READ | PROT_WRITE);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(*m, reservation);
  static_cast<volatile uint8_t*>(*m)[k64K] = 9;  // window offset 5 * 64K
  std::byte b{};
  ASSERT_TRUE(ram->read(5 * k64K, std::span(&b, 1)));
  EXPECT_EQ(b, std::byte{9});
  ram->unmap(*m, 4 * k64K);
  munmap(*m, 4 * k64K);
  EXPECT_EQ(log.count(), 0u);
}

// Once every link is trained the real RAM is served by the kernel's own fault path: touching it never reaches the
// userfaultfd service thread.
TEST_F(GpuRamTest, TrainedRealRamIsServedByTheKernelNotTheServiceThread) {
  trained = false;
  auto ram = make(HmiPolicy::kFatal);
  volatile uint8_t* p = map_all(*ram);
  EXPECT_FALSE(ram->served_by_kernel());
  trained = true;
  ram->links_changed();
  EXPECT_TRUE(ram->served_by_kernel());
  const uint64_t small = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  for (uint64_t off = 0; off < kReal; off += small) p[off] = static_cast<uint8_t>(off / small + 1);
  EXPECT_EQ(ram->serviced_faults(), 0u);
  EXPECT_EQ(ram->populated_pages(), kReal / k64K);
  EXPECT_EQ(log.count(), 0u);
  // The same memory as the pread path sees.
  std::byte b{};
  ASSERT_TRUE(ram->read(3 * small, std::span(&b, 1)));
  EXPECT_EQ(b, std::byte{4});
  // A mapping made after training is served the same way.
  auto second = ram->map(nullptr, 0, kWindow, PROT_READ | PROT_WRITE);
  ASSERT_TRUE(second.has_value());
  mapped.push_back(*second);
  EXPECT_EQ(static_cast<volatile uint8_t*>(*second)[3 * small], 4);
  static_cast<volatile uint8_t*>(*second)[kReal - 1] = 1;
  EXPECT_EQ(ram->serviced_faults(), 0u);
}

// A touch before training is still detected at the very page touched, and training afterwards hands the real RAM
// to the kernel.
TEST_F(GpuRamTest, PrematureTouchIsAnHmiAtTheTouchedAddressThenTrainingHandsTheRamToTheKernel) {
  trained = false;
  auto ram = make(HmiPolicy::kLog);
  volatile uint8_t* p = map_all(*ram);
  p[7 * k64K + 0x1234] = 1;
  ASSERT_EQ(log.count(), 1u);
  EXPECT_EQ(log.entries()[0].cause, HmiCause::kUntrainedLink);
  EXPECT_EQ(log.entries()[0].hpa, kWindowBase + 7 * k64K + 0x1234);
  EXPECT_EQ(ram->serviced_faults(), 1u);
  trained = true;
  ram->links_changed();
  for (uint64_t page = 8; page < 16; ++page) p[page * k64K] = 2;
  EXPECT_EQ(ram->serviced_faults(), 1u);
  EXPECT_EQ(log.count(), 1u);
}

// Training does not open the window beyond the real RAM: that part stays with the service.
TEST_F(GpuRamTest, BeyondRealRamIsStillAnHmiAfterTraining) {
  trained = false;
  auto ram = make(HmiPolicy::kLog);
  volatile uint8_t* p = map_all(*ram);
  trained = true;
  ram->links_changed();
  p[kReal - 1] = 1;  // the last real byte: the kernel's
  EXPECT_EQ(ram->serviced_faults(), 0u);
  p[kReal + 3 * k64K + 8] = 1;
  ASSERT_EQ(log.count(), 1u);
  EXPECT_EQ(log.entries()[0].cause, HmiCause::kBeyondRealRam);
  EXPECT_EQ(log.entries()[0].hpa, kWindowBase + kReal + 3 * k64K + 8);
  EXPECT_EQ(ram->serviced_faults(), 1u);
}

TEST(GpuRamFatal, TouchBeyondRealRamAfterTrainingRaisesSigbus) {
  expect_sigbus_in_child(1, /*untrained=*/false, [](GpuRam& ram) {
    ram.links_changed();
    auto m = ram.map(nullptr, 0, kWindow, PROT_READ | PROT_WRITE);
    if (!m) _exit(4);
    volatile uint8_t* p = static_cast<volatile uint8_t*>(*m);
    p[0] = 1;  // real RAM: fine
    (void)p[kReal];
  });
}

TEST(GpuRamFatal, TouchAfterAResetOfAPageTheKernelServedRaisesSigbus) {
  expect_sigbus_in_child(1, /*untrained=*/false, [](GpuRam& ram) {
    auto m = ram.map(nullptr, 0, kWindow, PROT_READ | PROT_WRITE);
    if (!m) _exit(4);
    ram.links_changed();
    volatile uint8_t* p = static_cast<volatile uint8_t*>(*m);
    p[2 * k64K] = 1;  // the kernel's
    g_child_trained = false;
    ram.zap();
    (void)p[2 * k64K + 0x3000];  // a hole of that page: a missing fault whatever the kernel offers
  });
}

// A GPU reset (zap with the links down) re-arms every page the kernel had served: each one is checked again.
TEST_F(GpuRamTest, ResetRearmsEveryPageTheKernelServed) {
  auto ram = make(HmiPolicy::kLog);
  if (!ram->checks_present_pages()) GTEST_SKIP() << "no minor-fault userfaultfd on shmem (Linux < 5.14)";
  volatile uint8_t* p = map_all(*ram);
  ram->links_changed();
  for (uint64_t page = 0; page < kReal / k64K; ++page) p[page * k64K + 0x10] = 5;
  EXPECT_EQ(ram->serviced_faults(), 0u);
  trained = false;
  ram->links_changed();
  ram->zap();
  EXPECT_FALSE(ram->served_by_kernel());
  for (uint64_t page = 0; page < kReal / k64K; ++page) EXPECT_EQ(p[page * k64K + 0x10], 5);  // contents kept
  ASSERT_EQ(log.count(), kReal / k64K);
  for (uint64_t page = 0; page < kReal / k64K; ++page) {
    EXPECT_EQ(log.entries()[page].cause, HmiCause::kUntrainedLink);
    EXPECT_EQ(log.entries()[page].hpa, kWindowBase + page * k64K + 0x10);
  }
  EXPECT_EQ(ram->serviced_faults(), kReal / k64K);
}

// A link that drops without a GPU reset unmaps nothing: the pages the client mapped stay usable (each 64 KiB page
// whole, as the service maps it), every other touch is checked again.
TEST_F(GpuRamTest, LinkDropKeepsMappedPagesWholeAndChecksTheRest) {
  auto ram = make(HmiPolicy::kLog);
  volatile uint8_t* p = map_all(*ram);
  ram->links_changed();
  p[3 * k64K] = 1;  // one machine page of model page 3, faulted in by the kernel
  trained = false;
  ram->links_changed();
  EXPECT_FALSE(ram->served_by_kernel());
  p[3 * k64K + k64K - 1] = 2;  // the rest of page 3: mapped, as the service would have left it
  EXPECT_EQ(log.count(), 0u);
  EXPECT_EQ(ram->serviced_faults(), 0u);
  p[9 * k64K + 4] = 3;  // a page never touched
  ASSERT_EQ(log.count(), 1u);
  EXPECT_EQ(log.entries()[0].cause, HmiCause::kUntrainedLink);
  EXPECT_EQ(log.entries()[0].hpa, kWindowBase + 9 * k64K + 4);
  EXPECT_EQ(ram->serviced_faults(), 1u);
}

// discard() leaves every page checked; the first touch the rule allows hands the real RAM back to the kernel.
TEST_F(GpuRamTest, AfterDiscardOneServicedTouchHandsTheRealRamBackToTheKernel) {
  auto ram = make(HmiPolicy::kFatal);
  volatile uint8_t* p = map_all(*ram);
  ram->links_changed();
  p[0] = 1;
  ram->discard();
  EXPECT_FALSE(ram->served_by_kernel());
  EXPECT_EQ(p[0], 0);
  EXPECT_EQ(ram->serviced_faults(), 1u);
  EXPECT_TRUE(ram->served_by_kernel());
  for (uint64_t page = 1; page < kReal / k64K; ++page) p[page * k64K] = 1;
  EXPECT_EQ(ram->serviced_faults(), 1u);
  EXPECT_EQ(log.count(), 0u);
}

// Threads keep touching the real RAM while the links go up and down: no touch is lost or stuck, whichever path
// serves it.
TEST_F(GpuRamTest, TouchesDuringLinkChangesAreNeitherLostNorStuck) {
  auto ram = make(HmiPolicy::kLog);
  volatile uint8_t* p = map_all(*ram);
  constexpr int kThreads = 3;
  const uint64_t small = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint64_t slots = kReal / small;
  std::atomic<bool> go{false};
  std::vector<std::thread> touchers;
  for (int t = 0; t < kThreads; ++t) {
    touchers.emplace_back([&, t] {
      while (!go.load()) {
      }
      for (uint64_t i = static_cast<uint64_t>(t); i < slots; i += kThreads)
        p[i * small + 1] = static_cast<uint8_t>(t + 1);
    });
  }
  go = true;
  for (int flip = 0; flip < 40; ++flip) {
    trained = flip % 2 == 0;
    ram->links_changed();
  }
  for (auto& th : touchers) th.join();
  for (uint64_t i = 0; i < slots; ++i) {
    std::byte b{};
    ASSERT_TRUE(ram->read(i * small + 1, std::span(&b, 1)));
    ASSERT_EQ(b, std::byte(static_cast<uint8_t>(i % kThreads + 1))) << "slot " << i;
  }
}

TEST(HmiLog, NamesAndRecords) {
  EXPECT_EQ(to_string(HmiCause::kUntrainedLink), "untrained-link");
  EXPECT_EQ(to_string(HmiCause::kBeyondRealRam), "beyond-real-ram");
  EXPECT_EQ(to_string(HmiPolicy::kFatal), "fatal");
  EXPECT_EQ(to_string(HmiPolicy::kLog), "log");
  HmiLog log;
  log.record(Hmi{{}, {}, 0x1234, HmiCause::kBeyondRealRam});
  EXPECT_EQ(log.count(), 1u);
  EXPECT_EQ(log.entries()[0].hpa, 0x1234u);
}

}  // namespace
}  // namespace nv2pt::platform
