#include "iommu/table_group.h"

#include <gtest/gtest.h>

namespace nv2pt::iommu {
namespace {

constexpr uint64_t GiB = 1ull << 30;

TEST(TableGroup, WindowsStartAtTce32StartAnd2To59) {
  Pe gpu("gpu", Pe::Kind::kPhb4);
  TableGroup group("g", TableGroup::Ops::kIoda2, {}, {&gpu});
  auto w0 = group.create_table(0, 12, 2 * GiB, 1, 16ull << 20);
  auto w1 = group.create_table(1, 16, 1ull << 46, 2, 16ull << 20);
  ASSERT_TRUE(w0);
  ASSERT_TRUE(w1);
  EXPECT_EQ((*w0)->bus_start(), 0u);
  EXPECT_EQ((*w1)->bus_start(), 1ull << 59);
  EXPECT_TRUE((*w1)->has_userspace_cache());
}

// The NPU PE holds only the window programmed last; GPU PEs hold both (docs/kernel/table-groups.md#npu-pe-has-one-tve).
TEST(TableGroup, NpuPeHoldsOnlyTheLastWindow) {
  Pe gpu("gpu", Pe::Kind::kPhb4), npu("npu", Pe::Kind::kNpu2);
  TableGroup group("compound", TableGroup::Ops::kNpuCompound, {}, {&gpu, &npu});
  group.take_ownership();
  auto w0 = group.create_table(0, 12, 2 * GiB, 1, 16ull << 20);
  auto w1 = group.create_table(1, 16, 1ull << 46, 2, 16ull << 20);
  ASSERT_TRUE(group.set_window(0, w0->get()));
  EXPECT_EQ(npu.window(0), w0->get());
  ASSERT_TRUE(group.set_window(1, w1->get()));
  EXPECT_EQ(gpu.window_count(), 2u);
  EXPECT_EQ(npu.window_count(), 1u);
  EXPECT_EQ(npu.window(0), nullptr);
  EXPECT_EQ(npu.window(1), w1->get());
}

// KVM attaches to table_group->tables[]: the compound group answers for every window it programmed, even when its
// first member is an NPU PE, whose single TVE holds only the window programmed last.
TEST(TableGroup, TableAnswersEveryWindowWhateverTheFirstMember) {
  Pe npu("npu", Pe::Kind::kNpu2), gpu("gpu", Pe::Kind::kPhb4);
  TableGroup group("compound", TableGroup::Ops::kNpuCompound, {}, {&npu, &gpu});
  group.take_ownership();
  auto w0 = group.create_table(0, 12, 2 * GiB, 1, 16ull << 20);
  auto w1 = group.create_table(1, 16, 1ull << 46, 2, 16ull << 20);
  ASSERT_TRUE(group.set_window(0, w0->get()));
  ASSERT_TRUE(group.set_window(1, w1->get()));
  EXPECT_EQ(npu.window(0), nullptr);
  EXPECT_EQ(group.table(0), w0->get());
  EXPECT_EQ(group.table(1), w1->get());
  group.unset_window(0);
  EXPECT_EQ(group.table(0), nullptr);
  EXPECT_EQ(group.table(1), w1->get());
  group.release_ownership();
  EXPECT_EQ(group.table(1), nullptr);
}

TEST(TableGroup, SetWindowRollsBackMembersAlreadyProgrammed) {
  Pe a("a", Pe::Kind::kPhb4), b("b", Pe::Kind::kPhb4), c("c", Pe::Kind::kNpu2);
  TableGroup group("compound", TableGroup::Ops::kNpuCompound, {}, {&a, &b, &c});
  auto w = group.create_table(1, 16, 1ull << 40, 2, 16ull << 20);
  c.fail_next_set_window();
  EXPECT_EQ(group.set_window(1, w->get()).error(), kEIO);  // firmware errors become EIO, not OPAL's code
  EXPECT_EQ(a.window(1), nullptr);
  EXPECT_EQ(b.window(1), nullptr);
  EXPECT_EQ(c.window(1), nullptr);
  EXPECT_EQ(group.table(1), nullptr);
}

TEST(TableGroup, OwnershipTogglesBypassAndDropsWindows) {
  Pe gpu("gpu", Pe::Kind::kPhb4);
  TableGroup group("g", TableGroup::Ops::kIoda2, {}, {&gpu});
  EXPECT_TRUE(gpu.bypass());
  group.take_ownership();
  EXPECT_FALSE(gpu.bypass());
  EXPECT_TRUE(group.owned_by_user());
  auto w = group.create_table(1, 16, 1ull << 40, 2, 16ull << 20);
  ASSERT_TRUE(group.set_window(1, w->get()));
  group.release_ownership();
  EXPECT_TRUE(gpu.bypass());
  EXPECT_EQ(gpu.window_count(), 0u);
}

TEST(Pe, TranslateFollowsTheTceAndItsPermissions) {
  Pe gpu("gpu", Pe::Kind::kPhb4);
  TableGroup group("g", TableGroup::Ops::kIoda2, {}, {&gpu});
  auto w = group.create_table(1, 16, 1ull << 40, 2, 16ull << 20);
  ASSERT_TRUE(group.set_window(1, w->get()));
  ASSERT_TRUE((*w)->exchange(2, 0x7770000, DmaDirection::kToDevice));
  const uint64_t bus = (1ull << 59) + 2 * 0x10000 + 0x123;
  EXPECT_EQ(gpu.translate(bus, /*write=*/false), 0x7770123u);
  EXPECT_EQ(gpu.translate(bus, /*write=*/true).error(), kEPERM);
  EXPECT_EQ(gpu.translate(bus + 0x10000, false).error(), kEFAULT);
  EXPECT_EQ(gpu.translate(0x1000, false).error(), kEFAULT);
}

TEST(TableGroup, LegacyGroupOwnsItsTce32Table) {
  Pe pe("pe", Pe::Kind::kPhb4);
  TableGroup group("legacy", TableGroup::Ops::kLegacy, {}, {&pe});
  EXPECT_FALSE(group.ddw_capable());
  ASSERT_NE(group.legacy_table(), nullptr);
  EXPECT_EQ(group.legacy_table()->size(), (2 * GiB) >> 12);
}

}  // namespace
}  // namespace nv2pt::iommu
