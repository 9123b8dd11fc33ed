#include "mm/client_memory.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstring>

namespace nv2pt::mm {
namespace {

struct Page {
  explicit Page(int prot) : p(mmap(nullptr, 4096, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)) {}
  ~Page() { munmap(p, 4096); }
  uint64_t ua() const { return reinterpret_cast<uint64_t>(p); }
  void* p;
};

TEST(ClientMemory, CopiesBothWays) {
  Page page(PROT_READ | PROT_WRITE);
  const char hello[] = "hello";
  ASSERT_TRUE(copy_to_client(page.ua() + 100, hello, sizeof hello));
  char out[sizeof hello] = {};
  ASSERT_TRUE(copy_from_client(out, page.ua() + 100, sizeof out));
  EXPECT_STREQ(out, "hello");
}

TEST(ClientMemory, UnreadableOrUnmappedIsEfaultNotACrash) {
  Page none(PROT_NONE);
  char out[8];
  EXPECT_EQ(copy_from_client(out, none.ua(), sizeof out).error(), kEFAULT);
  EXPECT_EQ(copy_from_client(out, 1ull << 63, sizeof out).error(), kEFAULT);  // never mapped in user space
}

TEST(ClientMemory, ReadOnlyIsEfaultForWrites) {
  Page ro(PROT_READ);
  const char data[4] = {1, 2, 3, 4};
  EXPECT_EQ(copy_to_client(ro.ua(), data, sizeof data).error(), kEFAULT);
  EXPECT_EQ(std::memcmp(ro.p, "\0\0\0\0", 4), 0);
}

}  // namespace
}  // namespace nv2pt::mm
