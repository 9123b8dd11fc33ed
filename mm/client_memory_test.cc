#include "mm/client_memory.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>

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

TEST(ClientMemory, StringEndingRightBeforeAnUnmappedPageIsRead) {
  void* two = mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(two, MAP_FAILED);
  char* first = static_cast<char*>(two);
  ASSERT_EQ(mprotect(first + 4096, 4096, PROT_NONE), 0);
  std::memcpy(first + 4096 - 6, "name\0", 5);
  auto s = copy_string_from_client(reinterpret_cast<uint64_t>(first + 4096 - 6), 65536);
  ASSERT_TRUE(s);
  EXPECT_EQ(*s, "name");
  // Unterminated up to the protected page: EFAULT; terminated only past `max`: EINVAL (strndup_user).
  std::memset(first + 4096 - 6, 'x', 6);
  EXPECT_EQ(copy_string_from_client(reinterpret_cast<uint64_t>(first + 4096 - 6), 65536).error(), kEFAULT);
  EXPECT_EQ(copy_string_from_client(reinterpret_cast<uint64_t>(first + 4096 - 6), 4).error(), kEINVAL);
  EXPECT_EQ(copy_string_from_client(0, 64).error(), kEFAULT);
  munmap(two, 8192);
}

// A string longer than the rest of its first 4 KiB page: found by a scan in chunks, then read whole (strnlen_user,
// then memdup_user). `max` counts the terminator: max - 1 characters fit, max do not.
TEST(ClientMemory, StringAcrossPagesIsReadWholeUpToMax) {
  void* pages = mmap(nullptr, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(pages, MAP_FAILED);
  char* start = static_cast<char*>(pages) + 4000;  // 96 bytes before the first page ends
  std::string want(6000, 'a');
  for (size_t i = 0; i < want.size(); ++i) want[i] = static_cast<char>('a' + i % 26);
  std::memcpy(start, want.c_str(), want.size() + 1);
  const uint64_t ua = reinterpret_cast<uint64_t>(start);
  auto s = copy_string_from_client(ua, 6001);
  ASSERT_TRUE(s);
  EXPECT_EQ(*s, want);
  EXPECT_EQ(copy_string_from_client(ua, 6000).error(), kEINVAL);
  start[10] = '\0';
  EXPECT_EQ(*copy_string_from_client(ua, 6001), want.substr(0, 10));
  munmap(pages, 3 * 4096);
}

// The pid process_vm_* is given is read again in a forked child: with the parent's, the child would read the
// parent's copy of its memory.
TEST(ClientMemory, AForkedChildReadsItsOwnMemory) {
  volatile uint64_t value = 1;
  uint64_t seen = 0;
  ASSERT_TRUE(copy_from_client(&seen, reinterpret_cast<uint64_t>(&value), sizeof(seen)));  // the parent's pid
  ASSERT_EQ(seen, 1u);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    value = 2;  // the child's page only
    const bool ok = copy_from_client(&seen, reinterpret_cast<uint64_t>(&value), sizeof(seen)).has_value();
    _exit(ok && seen == 2 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the child read " << status;
}

}  // namespace
}  // namespace nv2pt::mm
