#include "interpose/sysfs_view.h"

#include <gtest/gtest.h>

#include "platform/machine.h"
#include "vfio/host.h"

namespace nv2pt::interpose {
namespace {

TEST(SysfsViewTest, NormalizeCollapsesSlashesAndDots) {
  EXPECT_EQ(normalize_path("//sys/bus//pci/./devices/0004:04:00.0/"), "/sys/bus/pci/devices/0004:04:00.0");
  EXPECT_EQ(normalize_path("/"), "/");
  EXPECT_FALSE(normalize_path("sys/bus"));
  EXPECT_FALSE(normalize_path("/sys/bus/pci/devices/../devices"));
}

TEST(SysfsViewTest, ClassifyIsSyntactic) {
  EXPECT_EQ(classify("/sys/bus/pci/devices/0004:04:00.0"), Namespace::kSysPci);
  EXPECT_EQ(classify("/sys/bus/pci/devices"), Namespace::kNone);
  EXPECT_EQ(classify("/sys/kernel/iommu_groups/4/devices"), Namespace::kSysIommuGroups);
  EXPECT_EQ(classify("/dev/vfio"), Namespace::kDevVfio);
  EXPECT_EQ(classify("/dev/vfio/4"), Namespace::kDevVfio);
  EXPECT_EQ(classify("/dev/vfiox"), Namespace::kNone);
  EXPECT_EQ(classify("/proc/device-tree/pciex@600c3c0000000/ibm,loc-code"), Namespace::kProcDeviceTree);
  EXPECT_EQ(classify("/sys/devices/system/node"), Namespace::kNone);
  EXPECT_EQ(classify("/etc/libnl/classid"), Namespace::kNone);
}

class SysfsHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto host = vfio::Host::create(platform::Machine::load_default());
    ASSERT_TRUE(host);
    host_ = std::move(*host);
  }
  std::optional<Node> at(const std::string& path) {
    auto p = normalize_path(path);
    return lookup(*host_, classify(*p), *p);
  }
  std::unique_ptr<vfio::Host> host_;
};

TEST_F(SysfsHostTest, DeviceDirectoryAndIommuGroupLink) {
  auto dir = at("/sys/bus/pci/devices/0004:04:00.0");
  ASSERT_TRUE(dir);
  EXPECT_EQ(dir->kind, NodeKind::kDirectory);
  auto link = at("/sys/bus/pci/devices/0004:04:00.0/iommu_group");
  ASSERT_TRUE(link);
  EXPECT_EQ(link->kind, NodeKind::kSymlink);
  EXPECT_EQ(link->link, "../../../kernel/iommu_groups/4");
  EXPECT_EQ(link->target, "/sys/kernel/iommu_groups/4");
  auto bridge = at("/sys/bus/pci/devices/0006:00:00.1/iommu_group");
  ASSERT_TRUE(bridge);
  EXPECT_EQ(bridge->link, "../../../kernel/iommu_groups/4");
  auto sub = at("/sys/bus/pci/devices/0004:04:00.0/subsystem");
  ASSERT_TRUE(sub);
  EXPECT_EQ(sub->target, "/sys/bus/pci");
}

TEST_F(SysfsHostTest, UnknownDeviceIsNotOurs) {
  EXPECT_FALSE(at("/sys/bus/pci/devices/0000:00:02.0"));
  EXPECT_FALSE(at("/sys/bus/pci/devices/0004:04:00.0/no-such-attribute"));
}

TEST_F(SysfsHostTest, DevspecHasNoNewlineAndLocCodeEndsInNul) {
  auto devspec = at("/sys/bus/pci/devices/0004:04:00.0/devspec");
  ASSERT_TRUE(devspec);
  ASSERT_EQ(devspec->kind, NodeKind::kFile);
  ASSERT_FALSE(devspec->content.empty());
  EXPECT_EQ(devspec->content.front(), '/');
  EXPECT_NE(devspec->content.back(), '\n');
  auto loc = at("/proc/device-tree" + devspec->content + "/ibm,loc-code");
  ASSERT_TRUE(loc);
  EXPECT_EQ(loc->content, std::string("GPU0") + '\0');
}

TEST_F(SysfsHostTest, DevVfio) {
  auto control = at("/dev/vfio/vfio");
  ASSERT_TRUE(control);
  EXPECT_EQ(control->kind, NodeKind::kVfioControl);
  auto group = at("/dev/vfio/12");
  ASSERT_TRUE(group);
  EXPECT_EQ(group->kind, NodeKind::kVfioGroup);
  EXPECT_EQ(group->group, 12);
  EXPECT_FALSE(at("/dev/vfio/7"));
  EXPECT_TRUE(owns_absent(Namespace::kDevVfio));
}

TEST_F(SysfsHostTest, IommuGroupDirectoryListsMembers) {
  auto member = at("/sys/kernel/iommu_groups/4/devices/0006:00:00.0");
  ASSERT_TRUE(member);
  EXPECT_EQ(member->target, "/sys/bus/pci/devices/0006:00:00.0");
  EXPECT_FALSE(at("/sys/kernel/iommu_groups/5/devices/0006:00:00.0"));
}

TEST_F(SysfsHostTest, StatShapes) {
  struct stat st;
  fill_stat(*at("/sys/bus/pci/devices/0004:04:00.0"), st, true);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  fill_stat(*at("/sys/bus/pci/devices/0004:04:00.0/iommu_group"), st, false);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  fill_stat(*at("/dev/vfio/4"), st, true);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
}

}  // namespace
}  // namespace nv2pt::interpose
