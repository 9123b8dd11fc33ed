#include "cli/plan_command.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

namespace nv2pt::cli {
namespace {

struct Outcome {
  int code;
  std::string out, err;
};

Outcome run_plan(std::vector<const char*> args) {
  args.insert(args.begin(), {"nv2pt", "plan"});
  std::ostringstream out, err;
  const CommandRegistrar commands[] = {register_plan_command};
  int code = run(static_cast<int>(args.size()), args.data(), commands, out, err);
  return {code, out.str(), err.str()};
}

TEST(ParseSize, SuffixesHexAndGarbage) {
  EXPECT_EQ(parse_size("64K"), 65536u);
  EXPECT_EQ(parse_size("16MiB"), 16u << 20);
  EXPECT_EQ(parse_size("16G"), 16ull << 30);
  EXPECT_EQ(parse_size("0x244000000000"), 0x244000000000ull);
  EXPECT_EQ(parse_size("4096"), 4096u);
  EXPECT_EQ(parse_size("16Q"), std::nullopt);
  EXPECT_EQ(parse_size("G"), std::nullopt);
  EXPECT_EQ(parse_size(""), std::nullopt);
  EXPECT_EQ(parse_size("99999999999999999T"), std::nullopt);
}

// The seed's example by default: 4656 MiB exact-fit, with the note on the seed's 4556MB.
TEST(PlanCommand, DefaultIsTheSeedsExample) {
  Outcome r = run_plan({});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("0x244000000000"), std::string::npos);
  EXPECT_NE(r.out.find("4656 MiB (4882169856 bytes)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("4556MB"), std::string::npos);
  EXPECT_NE(r.out.find("2^46"), std::string::npos);
  EXPECT_NE(r.out.find("16384.5 MiB"), std::string::npos) << r.out;  // 2 levels (docs/kernel/numbers.md)
  EXPECT_NE(r.out.find("No --gpu given: GPU 0035:05:00.0"), std::string::npos) << r.out;
}

// Without --gpu on a machine that lacks 0035:05:00.0: that machine's last GPU, and the output says which.
TEST(PlanCommand, DefaultGpuIsTheLastGpuOfTheMachineGiven) {
  const std::string topology = std::string(NV2PT_CLI_TESTDATA) + "/one-v100-32g.dts";
  Outcome r = run_plan({"--topology", topology.c_str()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("No --gpu given: GPU 0004:04:00.0, the last GPU of this machine."), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("GPU 0004:04:00.0         0x00040000000000 - 0x00042000000000"), std::string::npos) << r.out;
  r = run_plan({"--topology", topology.c_str(), "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["default_gpu"], "0004:04:00.0");
  EXPECT_EQ(j["ranges"][1]["start"], 0x40000000000ull);
  r = run_plan({"--gpu", "0004:04:00.0", "--json"});  // named: no default to report
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(nlohmann::json::parse(r.out).contains("default_gpu"));
}

TEST(PlanCommand, JsonCarriesThePerLevelAndOnDemandFigures) {
  Outcome r = run_plan({"--gpu", "0035:05:00.0", "--gpu-map", "real", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["window_size"], 1ull << 46);
  EXPECT_EQ(j["levels"][1]["charged_bytes"], 17180393472ull);  // 16384.5 MiB
  EXPECT_EQ(j["levels"][1]["allocated_for_layout"], 2 * (4ull << 20) + 2 * (256u << 10));  // 8.5 MiB
  EXPECT_EQ(j["levels"][0]["allowed"], false);
  EXPECT_EQ(j["levels"][2]["allowed"], false);
  EXPECT_EQ(j["kvm"]["subpages"], 256);
  EXPECT_EQ(j["kvm"]["guest_entries"], 1ull << 22);
}

TEST(PlanCommand, BadArgumentsExit2WithTheReason) {
  for (auto args : std::vector<std::vector<const char*>>{{"--page-size", "48K"},
                                                         {"--ram", "lots"},
                                                         {"--gpu", "0004:99:00.0"},
                                                         {"--gpu-map", "half"},
                                                         {"--range", "x:1"},
                                                         {"--ram", "16G", "--range", "dup:0x100000000:1G"},
                                                         {"--max-alloc", "0"}}) {
    Outcome r = run_plan(args);
    EXPECT_EQ(r.code, 2) << args[0];
    EXPECT_NE(r.err.find("nv2pt: error:"), std::string::npos) << r.err;
  }
  Outcome r = run_plan({"--page-size", "48K"});
  EXPECT_NE(r.err.find("--page-size"), std::string::npos);
}

}  // namespace
}  // namespace nv2pt::cli
