// put_registered_tce: the one place where a v2 container's MAP/UNMAP and KVM's hypercalls give back the count a
// replaced or cleared host TCE held on its registered region.
#include "iommu/registered_tce.h"

#include <gtest/gtest.h>

#include "mm/address_space.h"
#include "mm/test_memory.h"

namespace nv2pt::iommu {
namespace {

using mm::testing::k64K;
using mm::testing::TestMapping;

class RegisteredTce : public ::testing::Test {
 protected:
  RegisteredTce() : as_(mm::AddressSpaceOptions{.id = 1001, .memlock = mm::MemlockPolicy::fixed(UINT64_MAX, false)}) {}
  mm::AddressSpace as_;
  TestMapping memory_{8 * k64K};
};

TEST_F(RegisteredTce, DropsTheCountAndMarksWhatTheDeviceCouldWrite) {
  auto region = as_.registry().add_regular(memory_.ua(), 8);
  ASSERT_TRUE(region);
  ASSERT_TRUE((*region)->mapped_inc());
  ASSERT_TRUE((*region)->mapped_inc());
  const uint64_t read_page = memory_.ua() + 2 * k64K;
  const uint64_t written_page = memory_.ua() + 5 * k64K;
  {
    const auto guard = as_.registry().read();
    EXPECT_TRUE(put_registered_tce(guard, k64K, DmaDirection::kToDevice, read_page));
    EXPECT_TRUE(put_registered_tce(guard, k64K, DmaDirection::kBidirectional, written_page));
  }
  EXPECT_EQ((*region)->mapped(), 1u);  // the registration's own count is left
  EXPECT_FALSE((*region)->is_dirty(read_page));
  EXPECT_TRUE((*region)->is_dirty(written_page));
  EXPECT_TRUE(as_.registry().put(*region));
}

TEST_F(RegisteredTce, NoRegionOrNoCachedAddressGivesNothingBack) {
  const auto guard = as_.registry().read();
  EXPECT_FALSE(put_registered_tce(guard, k64K, DmaDirection::kBidirectional, 0));
  EXPECT_FALSE(put_registered_tce(guard, k64K, DmaDirection::kBidirectional, memory_.ua()));  // not registered
}

}  // namespace
}  // namespace nv2pt::iommu
