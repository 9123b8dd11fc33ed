// Test helper: real memory of the test process, aligned as asked, unmapped on destruction.
#pragma once

#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>

#include <gtest/gtest.h>

namespace nv2pt::mm::testing {

inline constexpr uint64_t k64K = uint64_t{1} << 16;
inline constexpr uint64_t k2M = uint64_t{1} << 21;
inline constexpr uint64_t k1G = uint64_t{1} << 30;

class TestMapping {
 public:
  // `len` bytes of anonymous private memory at an address aligned to `align` (but not to 2*align, so that the
  // natural alignment of the range is exactly what the test asked for, unless len itself is less aligned).
  explicit TestMapping(uint64_t len, uint64_t align = k64K, int prot = PROT_READ | PROT_WRITE) : len_(len) {
    const uint64_t reserve = len + 4 * align;
    void* p = mmap(nullptr, reserve, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) std::abort();
    const uint64_t base = reinterpret_cast<uint64_t>(p);
    uint64_t ua = (base + align - 1) & ~(align - 1);
    if ((ua & (2 * align - 1)) == 0) ua += align;  // exactly `align`-aligned
    if (ua > base) munmap(p, ua - base);
    const uint64_t tail = base + reserve - (ua + len);
    if (tail) munmap(reinterpret_cast<void*>(ua + len), tail);
    ua_ = ua;
  }
  ~TestMapping() {
    if (ua_) munmap(reinterpret_cast<void*>(ua_), len_);
  }
  TestMapping(const TestMapping&) = delete;
  TestMapping& operator=(const TestMapping&) = delete;

  uint64_t ua() const { return ua_; }
  uint64_t len() const { return len_; }
  uint64_t pages() const { return len_ >> 16; }
  uint8_t* bytes() const { return reinterpret_cast<uint8_t*>(ua_); }
  // Unmaps [ua + offset, ua + offset + len): a hole that gup cannot pin.
  void punch(uint64_t offset, uint64_t len) const { ASSERT_EQ(munmap(reinterpret_cast<void*>(ua_ + offset), len), 0); }

 private:
  uint64_t ua_ = 0;
  uint64_t len_;
};

}  // namespace nv2pt::mm::testing
