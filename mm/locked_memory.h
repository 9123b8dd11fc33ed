// RLIMIT_MEMLOCK accounting of one address space (the kernel's mm->locked_vm and account_locked_vm()).
//
// The counter is in host pages of the model (64 KiB, base/host_page.h), whatever the real page size is. The limit
// and CAP_IPC_LOCK are those of the *calling* task, read at every charge through a MemlockPolicy; tests replace the
// policy with fixed values (CI runs as root, which has CAP_IPC_LOCK).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

#include "base/errno.h"
#include "base/thread_annotations.h"

namespace nv2pt::mm {

struct MemlockLimits {
  uint64_t limit_bytes;  // RLIMIT_MEMLOCK soft limit; UINT64_MAX = unlimited (RLIM_INFINITY)
  bool cap_ipc_lock;     // CAP_IPC_LOCK in the effective set: the limit does not apply
};

// Where the limit and the capability come from. Copyable; read() is called with no lock of ours held.
class MemlockPolicy {
 public:
  // getrlimit(RLIMIT_MEMLOCK) and the effective capability set of this process (capget, falling back to the CapEff
  // line of /proc/self/status), read at every call.
  static MemlockPolicy current_process();
  // Fixed values, for tests and for `nv2pt plan`-style what-ifs.
  static MemlockPolicy fixed(uint64_t limit_bytes, bool cap_ipc_lock);
  // Any source (the fuzzer bounds the process's own limits by what its memory layout can take).
  static MemlockPolicy of(std::function<MemlockLimits()> read) { return MemlockPolicy(std::move(read)); }

  MemlockLimits read() const { return read_(); }

 private:
  explicit MemlockPolicy(std::function<MemlockLimits()> read) : read_(std::move(read)) {}
  std::function<MemlockLimits()> read_;
};

// True if CAP_IPC_LOCK is in this process's effective capability set.
bool process_has_cap_ipc_lock();

class LockedMemory {
 public:
  explicit LockedMemory(MemlockPolicy policy = MemlockPolicy::current_process());

  // Adds `pages` 64 KiB pages. ENOMEM, with nothing changed, if the total would pass the limit and the caller lacks
  // CAP_IPC_LOCK. With the capability the charge is made anyway (the kernel counts it, it just does not refuse).
  Result<void> charge(uint64_t pages);
  // Gives pages back. Giving back more than is charged is a bug somewhere above: the counter stops at 0 and
  // underflows() counts the event for the invariant checker.
  void uncharge(uint64_t pages);

  uint64_t locked_pages() const;
  uint64_t underflows() const { return underflows_.load(std::memory_order_relaxed); }

  void set_policy(MemlockPolicy policy);

 private:
  mutable Mutex mu_;  // plays the role of the mm write lock account_locked_vm() takes
  MemlockPolicy policy_ NV2PT_GUARDED_BY(mu_);
  uint64_t locked_pages_ NV2PT_GUARDED_BY(mu_) = 0;
  std::atomic<uint64_t> underflows_{0};
};

}  // namespace nv2pt::mm
