#include "interpose/preload_options.h"

#include <signal.h>

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace nv2pt::interpose {
namespace {

std::map<std::string, std::string> env;
const char* fake_getenv(const char* name) {
  auto it = env.find(name);
  return it == env.end() ? nullptr : it->second.c_str();
}

TEST(PreloadOptionsTest, Defaults) {
  env = {};
  auto o = read_preload_options(fake_getenv);
  ASSERT_TRUE(o) << o.error();
  EXPECT_TRUE(o->topology.empty());
  EXPECT_EQ(o->hmi, platform::HmiPolicy::kFatal);
  EXPECT_EQ(o->report_signal, SIGUSR2);
  EXPECT_EQ(o->qemu72_uaf, SwitchSetting::kAuto);
  EXPECT_FALSE(o->runtime_dir.empty());
}

TEST(PreloadOptionsTest, AllSet) {
  env = {{"NV2PT_TOPOLOGY", "/t.dts"}, {"NV2PT_HMI", "log"},           {"NV2PT_REPORT", "/r.json"},
         {"NV2PT_RUNTIME_DIR", "/rt"}, {"NV2PT_COMPAT", "none"},        {"NV2PT_LOG", "/l"},
         {"NV2PT_REPORT_SIGNAL", "none"}};
  auto o = read_preload_options(fake_getenv);
  ASSERT_TRUE(o) << o.error();
  EXPECT_EQ(o->topology, "/t.dts");
  EXPECT_EQ(o->hmi, platform::HmiPolicy::kLog);
  EXPECT_EQ(o->report, "/r.json");
  EXPECT_EQ(o->runtime_dir, "/rt");
  EXPECT_EQ(o->qemu72_uaf, SwitchSetting::kOff);
  EXPECT_EQ(o->log, "/l");
  EXPECT_EQ(o->report_signal, 0);
}

TEST(PreloadOptionsTest, BadValuesNameTheVariable) {
  env = {{"NV2PT_HMI", "sometimes"}};
  auto o = read_preload_options(fake_getenv);
  ASSERT_FALSE(o);
  EXPECT_NE(o.error().find("NV2PT_HMI"), std::string::npos);
}

TEST(PreloadOptionsTest, CompatSwitchSpellings) {
  EXPECT_EQ(parse_compat("qemu72-nvlink2-region-info-uaf"), SwitchSetting::kOn);
  EXPECT_EQ(parse_compat("qemu72-nvlink2-region-info-uaf=on"), SwitchSetting::kOn);
  EXPECT_EQ(parse_compat("no-qemu72-nvlink2-region-info-uaf"), SwitchSetting::kOff);
  EXPECT_EQ(parse_compat("qemu72-nvlink2-region-info-uaf=off"), SwitchSetting::kOff);
  EXPECT_EQ(parse_compat("none,qemu72-nvlink2-region-info-uaf"), SwitchSetting::kOn);  // last one wins
  EXPECT_EQ(parse_compat("auto"), SwitchSetting::kAuto);
  EXPECT_EQ(parse_compat(""), SwitchSetting::kAuto);
  EXPECT_FALSE(parse_compat("qemu73-something"));
}

TEST(PreloadOptionsTest, PageSizeHostIsTheModelledHostsPage) {
  env = {{"NV2PT_PAGE_SIZE", "host"}, {"NV2PT_DMA_REQUESTS", "/req"}};
  auto o = read_preload_options(fake_getenv);
  ASSERT_TRUE(o) << o.error();
  EXPECT_EQ(o->page_size, 65536);
  EXPECT_EQ(o->dma_requests, "/req");
  EXPECT_EQ(parse_page_size("machine"), 0);
  EXPECT_EQ(parse_page_size(""), 0);
  env = {{"NV2PT_PAGE_SIZE", "64K"}};
  o = read_preload_options(fake_getenv);
  ASSERT_FALSE(o);
  EXPECT_NE(o.error().find("NV2PT_PAGE_SIZE"), std::string::npos);
}

}  // namespace
}  // namespace nv2pt::interpose
