#include "interpose/dma_requests.h"

#include <stdlib.h>
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "mm/address_space.h"
#include "vfio/container.h"
#include "vfio/host.h"
#include "vfio/test_host.h"
#include "vfio/uapi.h"

namespace nv2pt::interpose {
namespace {

using namespace vfio::testing;

// Group 4 in a v2 container with a 64-bit window of 64 KiB pages at 2^59 mapping 1 MiB of registered client memory
// at bus offset 0, as QEMU leaves it after a guest's H_PUT_TCE_INDIRECT.
class DmaRequestsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/nv2pt-dma-requests.XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    runtime_dir = dir;
    vfio::HostOptions o;
    o.runtime_dir = dir;
    auto h = vfio::Host::create(platform::Machine::load_default(), o);
    ASSERT_TRUE(h);
    host = std::move(*h);
    auto g = host->open_group(4);
    ASSERT_TRUE(g);
    group = *g;
    container = host->open_container();
    ASSERT_TRUE(group->set_container(container));
    ASSERT_TRUE(container->set_iommu(VFIO_SPAPR_TCE_v2_IOMMU));
    vfio_iommu_spapr_register_memory reg{24, 0, ram.ua(), ram.size()};
    ASSERT_TRUE(ioctl(VFIO_IOMMU_SPAPR_REGISTER_MEMORY, &reg));
    vfio_iommu_spapr_tce_create create{40, 0, 16, 0, 1ull << 40, 2, 0, 0};
    ASSERT_TRUE(ioctl(VFIO_IOMMU_SPAPR_TCE_CREATE, &create));
    ASSERT_EQ(create.start_addr, kBus);
    vfio_iommu_type1_dma_map map{32, 3, ram.ua(), kBus, ram.size()};
    ASSERT_TRUE(ioctl(VFIO_IOMMU_MAP_DMA, &map));
  }
  void TearDown() override {
    if (group) host->release_group(*group);
    std::filesystem::remove_all(runtime_dir);
  }
  bool ioctl(unsigned long cmd, void* arg) {
    return container->ioctl(as, cmd, reinterpret_cast<unsigned long>(arg)).has_value();
  }

  static constexpr uint64_t kBus = 1ull << 59;
  std::string runtime_dir;
  mm::AddressSpace as{process_options(1)};
  ClientMemory ram{1 * MiB};
  std::unique_ptr<vfio::Host> host;
  vfio::Group* group = nullptr;
  std::shared_ptr<vfio::Container> container;
};

TEST_F(DmaRequestsTest, WriteAtABusAddressReachesTheClientsByteAndReadsBack) {
  auto r = run_dma_requests(*host, as, "4 0x800000000010008 write 0102030405060708\n4 800000000010008 read 8\n");
  ASSERT_EQ(r.size(), 2u);
  EXPECT_FALSE(r[0].contains("error")) << r[0].dump();
  EXPECT_EQ(r[0]["written"], 8);
  EXPECT_EQ(std::memcmp(reinterpret_cast<void*>(ram.ua() + 0x10008), "\x01\x02\x03\x04\x05\x06\x07\x08", 8), 0);
  EXPECT_EQ(r[1]["bytes"], "0102030405060708");
  // The TCE's hpa is the hpa the pinner gave the page, and its user address is the client's.
  EXPECT_EQ(r[0]["hpa"], r[0]["pinned_hpa"]);
  char ua[32];
  snprintf(ua, sizeof ua, "%#llx", static_cast<unsigned long long>(ram.ua() + 0x10008));
  EXPECT_EQ(r[0]["ua"], ua);
}

TEST_F(DmaRequestsTest, UnmappedAddressesAndBadLinesAreErrorsNotCrashes) {
  auto r = run_dma_requests(*host, as,
                            "4 0x800000000100000 read 8\n"  // past the mapped 1 MiB: no valid TCE
                            "5 0x800000000000000 read 8\n"  // group 5 is not set up: no window
                            "4 0x800000000000000 write 0g\n"
                            "4 0x800000000000000 read 65\n"
                            "four 0x0 read 8\n"
                            "99 0x0 read 8\n");
  ASSERT_EQ(r.size(), 6u);
  EXPECT_EQ(r[0]["error"], "EFAULT");
  EXPECT_EQ(r[1]["error"], "EFAULT");
  for (size_t i = 2; i < 6; ++i) EXPECT_TRUE(r[i].contains("error")) << r[i].dump();
  EXPECT_EQ(r[5]["error"], "no GPU PE in that group");
}

}  // namespace
}  // namespace nv2pt::interpose
