#include "mm/address_space.h"

#include <unistd.h>

#include <thread>

#include <gtest/gtest.h>

namespace nv2pt::mm {
namespace {

TEST(AddressSpace, CurrentIsThisProcess) {
  AddressSpace& a = AddressSpace::current();
  EXPECT_EQ(&a, &AddressSpace::current());
  EXPECT_EQ(a.id(), static_cast<uint64_t>(getpid()));
}

TEST(AddressSpace, TestsChooseTheIdentity) {
  AddressSpace other({.id = 4242, .memlock = MemlockPolicy::fixed(0, false)});
  EXPECT_EQ(other.id(), 4242u);
  EXPECT_EQ(other.locked_memory().charge(1).error(), kENOMEM);
  EXPECT_TRUE(other.registry().empty());
}

TEST(AddressSpace, ScopedCurrentPlaysAnotherProcessOnThisThreadOnly) {
  AddressSpace other({.id = 7});
  AddressSpace& process = AddressSpace::current();
  {
    AddressSpace::ScopedCurrent as_other(other);
    EXPECT_EQ(&AddressSpace::current(), &other);
    std::thread([&] { EXPECT_EQ(&AddressSpace::current(), &process); }).join();
    {
      AddressSpace third({.id = 8});
      AddressSpace::ScopedCurrent nested(third);
      EXPECT_EQ(AddressSpace::current().id(), 8u);
    }
    EXPECT_EQ(AddressSpace::current().id(), 7u);
  }
  EXPECT_EQ(&AddressSpace::current(), &process);
}

}  // namespace
}  // namespace nv2pt::mm
