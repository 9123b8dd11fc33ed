#include "platform/hmi_log.h"

#include <cstdint>

#include <gtest/gtest.h>

namespace nv2pt::platform {
namespace {

Hmi at(uint64_t hpa) { return Hmi{std::chrono::system_clock::now(), PciAddress{}, hpa, HmiCause::kUntrainedLink}; }

// HMIs without end (a client under the log policy reading untrained GPU RAM in a loop) keep only the latest
// kKept, oldest first, and count every one.
TEST(HmiLog, KeepsTheLatestAndCountsThemAll) {
  HmiLog log;
  constexpr uint64_t kRecorded = HmiLog::kKept + 10;
  for (uint64_t i = 0; i < kRecorded; ++i) log.record(at(i));
  EXPECT_EQ(log.count(), kRecorded);
  const auto kept = log.entries();
  ASSERT_EQ(kept.size(), HmiLog::kKept);
  EXPECT_EQ(kept.front().hpa, 10u) << "the ten oldest went";
  EXPECT_EQ(kept.back().hpa, kRecorded - 1);
  for (size_t i = 1; i < kept.size(); ++i) ASSERT_EQ(kept[i].hpa, kept[i - 1].hpa + 1) << "in order";
}

// A fatal HMI is kept and counted like the others, and the hook sees it.
TEST(HmiLog, FatalHmiIsKeptAndCountedBeforeTheHookRuns) {
  HmiLog log;
  log.record(at(1));
  uint64_t seen = 0, count_in_hook = 0;
  log.set_fatal_hook([&](const Hmi& h) {
    seen = h.hpa;
    count_in_hook = log.count();
  });
  log.record_fatal(at(2));
  EXPECT_EQ(seen, 2u);
  EXPECT_EQ(count_in_hook, 2u);
  ASSERT_EQ(log.entries().size(), 2u);
  EXPECT_EQ(log.entries()[1].hpa, 2u);
}

}  // namespace
}  // namespace nv2pt::platform
