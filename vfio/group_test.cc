// The group fd's ioctls as a client reaches them (Group::ioctl): arguments read from and written to the client's
// memory, the fds they name resolved through the file table.
#include "vfio/group.h"

#include <sys/mman.h>

#include <gtest/gtest.h>

#include <cstring>

#include "vfio/host.h"
#include "vfio/pci_device.h"
#include "vfio/test_host.h"

namespace nv2pt::vfio {
namespace {

using namespace testing;

class GroupIoctl : public ::testing::Test {
 protected:
  static constexpr int kContainerFd = 3, kGroupFd = 5, kOtherFd = 9, kClosedFd = 42;

  void SetUp() override {
    auto host = Host::create(platform::Machine::load_default(), {});
    ASSERT_TRUE(host);
    host_ = std::move(*host);
    auto g = host_->open_group(4);
    ASSERT_TRUE(g);
    group_ = *g;
    fds_.containers[kContainerFd] = host_->open_container();
    fds_.groups[kGroupFd] = group_;
    fds_.others.insert(kOtherFd);
  }
  void TearDown() override {
    for (auto& [group, device] : fds_.devices) group->device_released(*device);
    if (group_) host_->release_group(*group_);
  }

  Result<long> ioctl(unsigned long cmd, uint64_t arg) { return group_->ioctl(as_, cmd, arg, fds_); }
  template <class T>
  Result<long> ioctl(unsigned long cmd, T* arg) { return ioctl(cmd, reinterpret_cast<uint64_t>(arg)); }
  Result<long> set_container(int32_t fd) { return ioctl(VFIO_GROUP_SET_CONTAINER, &fd); }
  Result<long> get_device_fd(const char* name) { return ioctl(VFIO_GROUP_GET_DEVICE_FD, const_cast<char*>(name)); }

  mm::AddressSpace as_{process_options(1)};
  std::unique_ptr<Host> host_;
  Group* group_ = nullptr;
  TestFds fds_;
};

TEST_F(GroupIoctl, StatusContainerAndDeviceFdsGoThroughTheFileTable) {
  vfio_group_status status{sizeof(status)};
  ASSERT_EQ(ioctl(VFIO_GROUP_GET_STATUS, &status), 0);
  EXPECT_EQ(status.flags, VFIO_GROUP_FLAGS_VIABLE);
  status.argsz = 4;
  EXPECT_EQ(ioctl(VFIO_GROUP_GET_STATUS, &status).error(), kEINVAL);

  // vfio_group_set_container: a closed fd is EBADF, any other file (a group too) EINVAL, a negative one EINVAL.
  EXPECT_EQ(set_container(kClosedFd).error(), kEBADF);
  EXPECT_EQ(set_container(kOtherFd).error(), kEINVAL);
  EXPECT_EQ(set_container(kGroupFd).error(), kEINVAL);
  EXPECT_EQ(set_container(-1).error(), kEINVAL);
  ASSERT_EQ(set_container(kContainerFd), 0);
  status.argsz = sizeof(status);
  ASSERT_EQ(ioctl(VFIO_GROUP_GET_STATUS, &status), 0);
  EXPECT_EQ(status.flags, VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET);
  // A group with a container is EINVAL before the fd is looked at.
  EXPECT_EQ(set_container(kClosedFd).error(), kEINVAL);

  EXPECT_EQ(get_device_fd("0004:04:00.0").error(), kEINVAL);  // no IOMMU driver yet
  ASSERT_TRUE(fds_.containers[kContainerFd]->ioctl(as_, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_v2_IOMMU));
  ASSERT_EQ(get_device_fd("0004:04:00.0"), TestFds::kFirstDeviceFd);
  ASSERT_EQ(fds_.devices.size(), 1u);
  EXPECT_EQ(fds_.devices[0].second->name(), "0004:04:00.0");
  EXPECT_EQ(get_device_fd("0004:04:00.7").error(), kENODEV);
  EXPECT_EQ(ioctl(VFIO_GROUP_UNSET_CONTAINER, uint64_t{0}).error(), kEBUSY);  // a device fd is open
  EXPECT_EQ(ioctl(_IO(VFIO_TYPE, VFIO_BASE + 30), uint64_t{0}).error(), kENOTTY);
}

// vfio_group_fops_open refuses a group whose previous open left its container binding behind (a device fd still
// open); the last device fd dissolves the binding, and the group opens again, with no container.
TEST_F(GroupIoctl, ReopenIsEbusyWhileADeviceFdKeepsTheContainer) {
  ASSERT_EQ(set_container(kContainerFd), 0);
  ASSERT_TRUE(fds_.containers[kContainerFd]->ioctl(as_, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_v2_IOMMU));
  ASSERT_EQ(get_device_fd("0004:04:00.0"), TestFds::kFirstDeviceFd);
  host_->release_group(*group_);
  group_ = nullptr;
  EXPECT_EQ(host_->open_group(4).error(), kEBUSY);
  auto [group, device] = fds_.devices.back();
  fds_.devices.pop_back();
  group->device_released(*device);
  auto g = host_->open_group(4);
  ASSERT_TRUE(g);
  group_ = *g;
  vfio_group_status status{sizeof(status)};
  ASSERT_EQ(ioctl(VFIO_GROUP_GET_STATUS, &status), 0);
  EXPECT_EQ(status.flags, VFIO_GROUP_FLAGS_VIABLE);
}

TEST_F(GroupIoctl, ArgumentsTheClientCannotReachAreEfault) {
  ClientMemory none(64 * KiB, PROT_NONE);
  EXPECT_EQ(ioctl(VFIO_GROUP_GET_STATUS, none.ua()).error(), kEFAULT);
  EXPECT_EQ(ioctl(VFIO_GROUP_SET_CONTAINER, none.ua()).error(), kEFAULT);
  EXPECT_EQ(ioctl(VFIO_GROUP_GET_DEVICE_FD, none.ua()).error(), kEFAULT);
  ClientMemory read_only(64 * KiB, PROT_READ);
  EXPECT_EQ(ioctl(VFIO_GROUP_GET_STATUS, read_only.ua()).error(), kEINVAL);  // argsz 0 is read, nothing written
  ASSERT_EQ(mprotect(reinterpret_cast<void*>(read_only.ua()), 64 * KiB, PROT_READ | PROT_WRITE), 0);
  const uint32_t argsz = sizeof(vfio_group_status);
  std::memcpy(reinterpret_cast<void*>(read_only.ua()), &argsz, sizeof(argsz));
  ASSERT_EQ(mprotect(reinterpret_cast<void*>(read_only.ua()), 64 * KiB, PROT_READ), 0);
  EXPECT_EQ(ioctl(VFIO_GROUP_GET_STATUS, read_only.ua()).error(), kEFAULT);  // the copy back faults
}

TEST_F(GroupIoctl, DeviceNameIsReadUpToItsTerminatorOnly) {
  ASSERT_EQ(set_container(kContainerFd), 0);
  ASSERT_TRUE(fds_.containers[kContainerFd]->ioctl(as_, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_v2_IOMMU));
  // The name ends right before a page the client cannot read (strndup_user stops at the NUL).
  ClientMemory m(128 * KiB);
  ASSERT_EQ(mprotect(reinterpret_cast<void*>(m.ua() + 64 * KiB), 64 * KiB, PROT_NONE), 0);
  const char name[] = "0004:04:00.0";
  char* at = reinterpret_cast<char*>(m.ua() + 64 * KiB - sizeof(name));
  std::memcpy(at, name, sizeof(name));
  EXPECT_EQ(get_device_fd(at), TestFds::kFirstDeviceFd);
  // Without its terminator the read runs into that page: EFAULT, nothing opened.
  at[sizeof(name) - 1] = '0';
  EXPECT_EQ(get_device_fd(at).error(), kEFAULT);
  EXPECT_EQ(fds_.devices.size(), 1u);
}

}  // namespace
}  // namespace nv2pt::vfio
