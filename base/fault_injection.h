// Fail-the-Nth-allocation injection, like the iommufd selftests' fail_nth: a test arms a countdown on its thread,
// and the N-th allocation made on behalf of a client call from then on fails as if memory had run out. Replaying
// a call sequence with N = 1, 2, ... walks every allocation failure path once.
//
// The places that allocate for a client (TCE table blocks, pinned frames, registry regions, the container's
// registration list, extra regions) call should_fail_allocation() and report ENOMEM when it says so. Disarmed,
// the check is one relaxed atomic load.
#pragma once

#include <atomic>
#include <cstdint>

namespace nv2pt {

namespace fault_detail {
// Threads with a countdown armed; the fast path only reads this.
inline std::atomic<int> armed_threads{0};
bool countdown_fires();
}  // namespace fault_detail

// True if this allocation is the one the calling thread's armed countdown chose.
inline bool should_fail_allocation() {
  if (fault_detail::armed_threads.load(std::memory_order_relaxed) == 0) [[likely]]
    return false;
  return fault_detail::countdown_fires();
}

// Arms "fail the n-th allocation from now" (n >= 1) on the calling thread until destroyed. Only one allocation
// fails; the ones after it succeed again.
class ScopedFailNth {
 public:
  explicit ScopedFailNth(uint64_t n);
  ~ScopedFailNth();
  ScopedFailNth(const ScopedFailNth&) = delete;
  ScopedFailNth& operator=(const ScopedFailNth&) = delete;

  // Whether the n-th allocation happened (and failed).
  bool fired() const;
  // Allocation checks seen on this thread since arming.
  uint64_t checks() const;
};

}  // namespace nv2pt
