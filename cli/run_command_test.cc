#include "cli/run_command.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <signal.h>

#include <fmt/format.h>

#include <cstring>
#include <sstream>
#include <vector>

#include "cli/dtb_command.h"
#include "cli/lspci_command.h"
#include "cli/plan_command.h"

namespace nv2pt::cli {
namespace {

using ::testing::HasSubstr;

struct Outcome {
  int status;
  std::string out;
  std::string err;
};

Outcome nv2pt(std::vector<const char*> args) {
  args.insert(args.begin(), "nv2pt");
  constexpr CommandRegistrar kCommands[] = {register_lspci_command, register_plan_command, register_run_command,
                                            register_dtb_command};
  std::ostringstream out, err;
  const int status = run(static_cast<int>(args.size()), args.data(), kCommands, out, err);
  return {status, out.str(), err.str()};
}

TEST(RunCommandTest, NeedsAProgram) {
  Outcome o = nv2pt({"run"});
  EXPECT_EQ(o.status, kExitUsage);
}

TEST(RunCommandTest, RejectsUnknownSwitchesBeforeRunning) {
  Outcome o = nv2pt({"run", "--compat", "qemu99-bogus", "--", "true"});
  EXPECT_EQ(o.status, kExitUsage);
  EXPECT_THAT(o.err, HasSubstr("unknown compatibility switch 'qemu99-bogus'"));
  o = nv2pt({"run", "--hmi", "sometimes", "--", "true"});
  EXPECT_EQ(o.status, kExitUsage);
  EXPECT_THAT(o.err, HasSubstr("--hmi sometimes"));
}

TEST(RunCommandTest, ExitsWithTheProgramsStatus) {
  if (find_preload_library().empty()) GTEST_SKIP() << "libnv2pt_preload.so not built (sanitizer build)";
  const std::string runtime = ::testing::TempDir() + "/nv2pt-run-test";
  Outcome o = nv2pt({"run", "--runtime-dir", runtime.c_str(), "--", "sh", "-c", "exit 3"});
  EXPECT_EQ(o.status, 3);
  // sh made no VFIO call, so no report was written.
  EXPECT_THAT(o.err, HasSubstr("no report"));
  o = nv2pt({"run", "--runtime-dir", runtime.c_str(), "--", "/nonexistent/program"});
  EXPECT_EQ(o.status, 127);
}

TEST(RunCommandTest, ProgramArgumentsAfterTheSeparatorAreNotOurs) {
  if (find_preload_library().empty()) GTEST_SKIP() << "libnv2pt_preload.so not built (sanitizer build)";
  const std::string runtime = ::testing::TempDir() + "/nv2pt-run-test";
  Outcome o = nv2pt({"run", "--runtime-dir", runtime.c_str(), "--compat", "none", "--", "sh", "-c", "exit 0", "-M", "x"});
  EXPECT_EQ(o.status, 0) << o.err;
}

TEST(RunCommandTest, SummaryOfAReport) {
  const nlohmann::json report = nlohmann::json::parse(R"({
    "devices": [{"address": "0004:04:00.0", "extra_regions": ["nvlink2-gpu-ram"]}],
    "containers": [{"container": 1, "iommu": "spapr-tce-v2", "groups": [4], "charged_pages": 66,
                    "windows": [{"slot": 0, "start": "0x0", "page_size": 4096, "levels": 2,
                                 "window_size": "0x40000000", "allocated_bytes": 131072, "tces_mapped": 1}]}],
    "registered_memory": [{"kind": "device", "ua": "0x7f0000000000", "size": "0x2000000000", "used": 2, "mapped": 1}],
    "locked_memory": {"pages": 4162, "bytes": 272760832, "pinned_pages": 4096},
    "hmis": [{"time": "2026-01-01T00:00:00", "gpu": "0004:04:00.0", "hpa": "0x40400000000", "cause": "beyond real RAM"}],
    "links": [{"bridge": "0006:00:00.0", "state": "trained"}, {"bridge": "0006:00:00.1", "state": "trained"}],
    "compat": {"qemu72-nvlink2-region-info-uaf": {"active": true, "setting": "auto", "kept_buffers": 3}}
  })");
  const std::string s = format_report_summary(report);
  EXPECT_THAT(s, HasSubstr("devices open: 0004:04:00.0 (nvlink2-gpu-ram)"));
  EXPECT_THAT(s, HasSubstr("container 1: spapr-tce-v2, groups 4, 66 locked pages for tables"));
  EXPECT_THAT(s, HasSubstr("window 0: start 0x0, 4 KiB pages, 2 levels, size 1 GiB, 128 KiB of tables allocated, "
                           "1 TCEs mapped"));
  EXPECT_THAT(s, HasSubstr("registered device memory at 0x7f0000000000: 128 GiB, used 2, mapped 1"));
  EXPECT_THAT(s, HasSubstr("locked memory: 4162 pages of 64 KiB"));
  EXPECT_THAT(s, HasSubstr("HMIs: 1\n    2026-01-01T00:00:00 GPU 0004:04:00.0 hpa 0x40400000000: beyond real RAM"));
  EXPECT_THAT(s, HasSubstr("links trained: 2"));
  EXPECT_THAT(s, HasSubstr("compat qemu72-nvlink2-region-info-uaf: on (setting auto), 3 buffers kept"));
}

// The report lists the latest HMIs (HmiLog::kKept) and counts them all: the summary says how many it lists.
TEST(RunCommandTest, SummaryCountsMoreHmisThanTheReportLists) {
  const nlohmann::json report = nlohmann::json::parse(R"({
    "hmis": [{"time": "2026-01-01T00:00:00", "gpu": "0004:04:00.0", "hpa": "0x40000000000", "cause": "untrained-link"}],
    "hmi_count": 5000
  })");
  EXPECT_THAT(format_report_summary(report), HasSubstr("HMIs: 5000 (the latest 1 listed)\n    2026-01-01T00:00:00"));
  EXPECT_THAT(format_report_summary(nlohmann::json::parse(R"({"hmis": [], "hmi_count": 0})")),
              HasSubstr("HMIs: none"));
}

// A fatal HMI's report names the HMI; nv2pt run says what killed the program instead of "no VFIO call".
TEST(RunCommandTest, KilledByAFatalHmiSaysWhichOne) {
  const nlohmann::json report = nlohmann::json::parse(R"({
    "hmis": [{"time": "2026-01-01T00:00:00", "gpu": "0004:04:00.0", "hpa": "0x40000000000", "cause": "untrained-link"}],
    "fatal_hmi": {"time": "2026-01-01T00:00:00", "gpu": "0004:04:00.0", "hpa": "0x40000000000",
                  "cause": "untrained-link", "signal": "SIGBUS"}
  })");
  const int killed_by_sigbus = SIGBUS;  // a wait status: terminated by the signal, no core
  EXPECT_EQ(describe_end("qemu-system-ppc64", killed_by_sigbus, &report),
            "nv2pt: qemu-system-ppc64 was killed by SIGBUS after a fatal HMI: GPU 0004:04:00.0, host address "
            "0x40000000000: GPU RAM touched before the GPU's NVLinks were trained (untrained-link)\n");
  EXPECT_THAT(format_report_summary(report), HasSubstr("summary of the emulated host at the fatal HMI"));
  EXPECT_EQ(describe_end("prog", killed_by_sigbus, nullptr),
            fmt::format("nv2pt: prog was killed by signal {} ({})\n"
                        "nv2pt: no report: the program was killed before it wrote one (it is written at exit)\n",
                        SIGBUS, strsignal(SIGBUS)));
  EXPECT_EQ(describe_end("prog", 3 << 8, nullptr), "nv2pt: no report: the program made no VFIO call\n");
  EXPECT_EQ(describe_end("prog", 0, &report), "");
}

}  // namespace
}  // namespace nv2pt::cli
