#include "platform/gpu_ram.h"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <optional>

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
  EXPECT_EQ(log.size(), 0u);
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
  ASSERT_EQ(log.size(), 1u);
  const Hmi hmi = log.entries()[0];
  EXPECT_EQ(hmi.cause, HmiCause::kUntrainedLink);
  EXPECT_EQ(hmi.hpa, kWindowBase + 2 * k64K + 16);
  EXPECT_EQ(hmi.gpu.to_string(), "0004:04:00.0");
  p[2 * k64K + 16] = 1;  // populated now: no second HMI
  EXPECT_EQ(log.size(), 1u);
}

TEST_F(GpuRamTest, TouchBeyondRealRamIsAnHmi) {
  auto ram = make(HmiPolicy::kLog);
  volatile uint8_t* p = map_all(*ram);
  EXPECT_EQ(p[kReal + 5], 0);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log.entries()[0].cause, HmiCause::kBeyondRealRam);
  EXPECT_EQ(log.entries()[0].hpa, kWindowBase + kReal + 5);
  EXPECT_EQ(p[kReal - 1], 0);  // the last real page is fine
  EXPECT_EQ(log.size(), 1u);
}

// The fatal policy kills the touching thread's process with SIGBUS. The child reports its HMI count from its
// SIGBUS handler, then dies of the signal.
int g_report_fd = -1;
HmiLog* g_child_log = nullptr;

void report_and_die(int) {
  const uint64_t n = g_child_log ? g_child_log->size() : 0;
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
    std::atomic<bool> trained{!untrained};
    GpuRam::Config c;
    c.gpu = PciAddress::parse("0004:04:00.0").value();
    c.window_base = kWindowBase;
    c.window_size = kWindow;
    c.real_size = kReal;
    c.policy = HmiPolicy::kFatal;
    auto ram = GpuRam::create(c, log, [&] { return trained.load(); });
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
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log.entries()[1].cause, HmiCause::kBeyondRealRam);
  // Untrained but real: recorded, and the access goes on.
  trained = false;
  ASSERT_TRUE(ram->write(8, std::as_bytes(std::span(&v, 1))));
  ASSERT_TRUE(ram->read(8, std::as_writable_bytes(std::span(&back, 1))));
  EXPECT_EQ(back, v);
  ASSERT_EQ(log.size(), 4u);
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
  EXPECT_EQ(log.size(), 1u);
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
  EXPECT_EQ(log.size(), 0u);
}

TEST(HmiLog, NamesAndRecords) {
  EXPECT_EQ(to_string(HmiCause::kUntrainedLink), "untrained-link");
  EXPECT_EQ(to_string(HmiCause::kBeyondRealRam), "beyond-real-ram");
  EXPECT_EQ(to_string(HmiPolicy::kFatal), "fatal");
  EXPECT_EQ(to_string(HmiPolicy::kLog), "log");
  HmiLog log;
  log.record(Hmi{{}, {}, 0x1234, HmiCause::kBeyondRealRam});
  EXPECT_EQ(log.size(), 1u);
  EXPECT_EQ(log.entries()[0].hpa, 0x1234u);
}

}  // namespace
}  // namespace nv2pt::platform
