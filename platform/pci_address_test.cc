#include "platform/pci_address.h"

#include <gtest/gtest.h>

namespace nv2pt::platform {
namespace {

TEST(PciAddress, ParsesAndFormatsLinuxSpelling) {
  auto a = PciAddress::parse("0035:03:00.0");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->domain, 0x35u);
  EXPECT_EQ(a->bus, 3);
  EXPECT_EQ(a->device, 0);
  EXPECT_EQ(a->function, 0);
  EXPECT_EQ(a->to_string(), "0035:03:00.0");
  EXPECT_EQ(PciAddress::parse("0006:00:02.1")->to_string(), "0006:00:02.1");
  EXPECT_EQ(PciAddress::parse("10000:ff:1f.7")->to_string(), "10000:ff:1f.7");
}

TEST(PciAddress, RejectsMalformedText) {
  for (const char* text : {"", "04:00.0", "0004:4:00.0", "0004:04:20.0", "0004:04:00.8", "0004:04:00.0 ", "0004-04:00.0",
                           "0004:04:00", "zzzz:04:00.0"})
    EXPECT_FALSE(PciAddress::parse(text)) << text;
}

TEST(PciAddress, FromPhysHiAndBdfn) {
  auto a = PciAddress::from_phys_hi(6, 0x1100);  // bus 0, dev 2, fn 1
  EXPECT_EQ(a.to_string(), "0006:00:02.1");
  EXPECT_EQ(a.bdfn(), 0x11);
  EXPECT_EQ(PciAddress::from_phys_hi(4, 0x40000).to_string(), "0004:04:00.0");
  EXPECT_EQ(PciAddress::from_phys_hi(4, 0x40000).bdfn(), 0x400);
}

TEST(PciAddress, OrdersByDomainBusDeviceFunction) {
  EXPECT_LT(*PciAddress::parse("0004:06:00.0"), *PciAddress::parse("0006:00:00.0"));
  EXPECT_LT(*PciAddress::parse("0006:00:00.1"), *PciAddress::parse("0006:00:01.0"));
  EXPECT_LT(*PciAddress::parse("0007:00:02.1"), *PciAddress::parse("0035:03:00.0"));
}

}  // namespace
}  // namespace nv2pt::platform
