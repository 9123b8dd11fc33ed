#include "cli/lspci_command.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

extern char** environ;

namespace nv2pt::cli {
namespace {

using ::testing::HasSubstr;

const std::string kTopologies = NV2PT_TEST_TOPOLOGIES;

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

const std::string& seed_listing() {
  static const std::string text = read_text(std::string(NV2PT_CLI_TESTDATA) + "/lspci-seed.txt");
  return text;
}

struct Outcome {
  int status;
  std::string out;
  std::string err;
};

// In process, through the same entry point as main().
Outcome run_in_process(std::vector<const char*> args) {
  static constexpr CommandRegistrar kCommands[] = {register_lspci_command};
  args.insert(args.begin(), "nv2pt");
  std::ostringstream out, err;
  int status = run(static_cast<int>(args.size()), args.data(), kCommands, out, err);
  return {status, out.str(), err.str()};
}

std::string contents(int fd) {
  std::string text(static_cast<size_t>(lseek(fd, 0, SEEK_END)), '\0');
  EXPECT_EQ(pread(fd, text.data(), text.size(), 0), static_cast<ssize_t>(text.size()));
  close(fd);
  return text;
}

// The real binary, as a user runs it.
Outcome run_binary(std::vector<std::string> args) {
  args.insert(args.begin(), NV2PT_BINARY);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int out = memfd_create("out", 0), err = memfd_create("err", 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err, STDERR_FILENO);
  pid_t pid;
  EXPECT_EQ(posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status));
  return {WEXITSTATUS(status), contents(out), contents(err)};
}

TEST(LspciFormat, DefaultMachineIsTheSeedsListing) {
  auto machine = platform::Machine::load_default();
  EXPECT_EQ(format_lspci(machine, {}), seed_listing());
}

TEST(LspciFormat, UnknownNamesAndMissingGroupsStillPrint) {
  auto tree = platform::DeviceTree::load(kTopologies + "/missing-iommu-group.dts");
  ASSERT_TRUE(tree);
  auto machine = platform::Machine::load(std::move(*tree), {.validate = false});
  ASSERT_TRUE(machine);
  EXPECT_THAT(format_lspci(*machine, {}), HasSubstr("\n- 0035:05:00.0 3D: NVIDIA Corporation GV100GL"));
}

TEST(LspciFormat, VerboseShowsNvlinkDetails) {
  auto machine = platform::Machine::load_default();
  (void)machine.set_driver(*platform::PciAddress::parse("0035:05:00.0"), "");
  std::string text = format_lspci(machine, {.verbose = true});
  EXPECT_THAT(text, HasSubstr("12 0035:05:00.0 3D: NVIDIA Corporation GV100GL [Tesla V100 SXM2] (rev a1)\n"
                              "\tGPU RAM window: base 0x0000244000000000, size 128 GiB\n"
                              "\tGPU RAM real size: 16 GiB\n"
                              "\tNUMA node (ibm,associativity): 250\n"
                              "\tTGT: 0x00000c4000000000\n"
                              "\tNVLink bridges: 0007:00:02.0, 0007:00:02.1\n"
                              "\tHost driver: none\n"
                              "\tLocation: GPU5\n"
                              "\tDevice-tree node: /pciex@620c3c0500000/3d@5\n"));
  EXPECT_THAT(text, HasSubstr("4 0006:00:00.1 Bridge: IBM Device 04ea (rev 01)\n"
                              "\tGPU: 0004:04:00.0\n"
                              "\tNVLink: link index 1, group 0\n"
                              "\tLink speed: 0x9 (25.0 Gbps)\n"
                              "\tTGT: 0x0000040000000000\n"
                              "\tATSD: 0x0006030200810000\n"
                              "\tHost driver: vfio-pci\n"
                              "\tLocation: GPU0\n"
                              "\tDevice-tree node: /pciex@6030200000000/pci@0,1\n"));
}

TEST(LspciFormat, NamesTheV100Sxm2With32GB) {
  auto tree = platform::DeviceTree::load(std::string(NV2PT_CLI_TESTDATA) + "/one-v100-32g.dts");
  ASSERT_TRUE(tree) << tree.error().message;
  auto machine = platform::Machine::load(std::move(*tree));
  ASSERT_TRUE(machine) << machine.error().message;
  EXPECT_EQ(format_lspci(*machine, {}),
            "4 0004:04:00.0 3D: NVIDIA Corporation GV100GL [Tesla V100 SXM2 32GB] (rev a1)\n"
            "4 0006:00:00.0 Bridge: IBM Device 04ea (rev 01)\n"
            "4 0006:00:00.1 Bridge: IBM Device 04ea (rev 01)\n");
}

TEST(LspciFormat, VerboseSaysWhatIsMissing) {
  auto tree = platform::DeviceTree::load(kTopologies + "/kernel-no-nvlink-speed.dts");
  ASSERT_TRUE(tree);
  auto machine = platform::Machine::load(std::move(*tree), {.validate = false});
  ASSERT_TRUE(machine);
  EXPECT_THAT(format_lspci(*machine, {.verbose = true}), HasSubstr("4 0006:00:00.0 Bridge: IBM Device 04ea (rev 01)\n"
                                                                   "\tGPU: 0004:04:00.0\n"
                                                                   "\tNVLink: link index 0, group 0\n"
                                                                   "\tLink speed: missing\n"));
}

TEST(LspciCommand, InProcess) {
  auto r = run_in_process({"lspci"});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out, seed_listing());
  EXPECT_EQ(r.err, "");
  auto after = run_in_process({"lspci", "--topology", NV2PT_DEFAULT_DTS});  // global option after the subcommand
  EXPECT_EQ(after.status, 0) << after.err;
  EXPECT_EQ(after.out, seed_listing());
}

TEST(LspciCommand, HelpAndMissingSubcommand) {
  auto help = run_in_process({"--help"});
  EXPECT_EQ(help.status, 0);
  EXPECT_THAT(help.out, HasSubstr("--topology"));
  EXPECT_THAT(help.out, HasSubstr("lspci"));
  auto none = run_in_process({});
  EXPECT_EQ(none.status, kExitUsage);
  EXPECT_THAT(none.err, HasSubstr("nv2pt: error:"));
}

TEST(NvBinary, LspciPrintsTheSeedsListing) {
  auto r = run_binary({"lspci"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, seed_listing());
  EXPECT_EQ(r.err, "");
}

TEST(NvBinary, TopologyFromDtsAndDtb) {
  for (const char* file : {NV2PT_DEFAULT_DTS, NV2PT_DEFAULT_DTB}) {
    auto r = run_binary({"--topology", file, "lspci"});
    EXPECT_EQ(r.status, 0) << file << ": " << r.err;
    EXPECT_EQ(r.out, seed_listing()) << file;
  }
}

TEST(NvBinary, VerboseListsEveryFunction) {
  auto r = run_binary({"lspci", "-v"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(std::ranges::count(r.out, '\n'), 18 + 6 * 8 + 12 * 8);  // a header and 8 detail lines per function
}

TEST(NvBinary, BadTopologyFileExits2WithTheReason) {
  std::string bad = kTopologies + "/not-a-tree.dts";
  auto r = run_binary({"--topology", bad, "lspci"});
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, HasSubstr("nv2pt: error: " + bad + ": dtc failed:"));
  EXPECT_THAT(r.err, HasSubstr("syntax error"));

  auto missing = run_binary({"--topology", "/nonexistent/machine.dtb", "lspci"});
  EXPECT_EQ(missing.status, 2);
  EXPECT_THAT(missing.err, HasSubstr("nv2pt: error: /nonexistent/machine.dtb: cannot open"));

  auto kind = run_binary({"--topology", kTopologies + "/README.md", "lspci"});
  EXPECT_EQ(kind.status, 2);
  EXPECT_THAT(kind.err, HasSubstr("unknown topology file type"));
}

TEST(NvBinary, InconsistentTopologyExits2UnlessValidationIsOff) {
  std::string file = kTopologies + "/bad-gpu-phandle.dts";
  auto r = run_binary({"--topology", file, "lspci"});
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.err, "nv2pt: error: " + file +
                       ": /pciex@6030200000000/pci@0,1: ibm,gpu: phandle 0x99 resolves to no node\n");

  auto off = run_binary({"--topology", kTopologies + "/kernel-no-tgt.dts", "--no-validate", "lspci"});
  EXPECT_EQ(off.status, 0) << off.err;
  EXPECT_EQ(off.out, seed_listing());
}

TEST(NvBinary, UnknownOptionOrCommandExits2) {
  auto option = run_binary({"lspci", "--frobnicate"});
  EXPECT_EQ(option.status, 2);
  EXPECT_THAT(option.err, HasSubstr("nv2pt: error:"));
  EXPECT_THAT(option.err, HasSubstr("--frobnicate"));
  auto command = run_binary({"frobnicate"});
  EXPECT_EQ(command.status, 2);
  EXPECT_THAT(command.err, HasSubstr("nv2pt: error:"));
}

}  // namespace
}  // namespace nv2pt::cli
