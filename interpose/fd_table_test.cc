#include "interpose/fd_table.h"

#include <gtest/gtest.h>

namespace nv2pt::interpose {
namespace {

TEST(FdTableTest, InstallFindRemove) {
  auto table = std::make_unique<FdTable>();
  EXPECT_EQ(table->find(3), nullptr);
  EXPECT_EQ(table->find(-1), nullptr);
  EXPECT_EQ(table->find(FdTable::kMaxFd), nullptr);
  ASSERT_TRUE(table->install(3, std::make_unique<FdObject>(FdObject{.kind = FdKind::kGroup})));
  EXPECT_FALSE(table->install(3, std::make_unique<FdObject>(FdObject{.kind = FdKind::kContainer})));
  ASSERT_NE(table->find(3), nullptr);
  EXPECT_EQ(table->find(3)->kind, FdKind::kGroup);
  EXPECT_EQ(table->entries().size(), 1u);
  FdObject* removed = table->remove(3);
  ASSERT_NE(removed, nullptr);
  EXPECT_EQ(removed->kind, FdKind::kGroup);  // retired, still readable
  EXPECT_EQ(table->find(3), nullptr);
  EXPECT_EQ(table->remove(3), nullptr);
}

TEST(FdTableTest, OutOfRangeRefused) {
  auto table = std::make_unique<FdTable>();
  EXPECT_FALSE(table->install(FdTable::kMaxFd, std::make_unique<FdObject>(FdObject{.kind = FdKind::kFile})));
  EXPECT_FALSE(table->install(-1, std::make_unique<FdObject>(FdObject{.kind = FdKind::kFile})));
}

}  // namespace
}  // namespace nv2pt::interpose
